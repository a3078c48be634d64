"""`bert-flax inspect-data`: the examples the model will see, as JSON records or a readable view."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from bert_flax.data.dataset import PretrainingData
from bert_flax.data.pairing import NSP_LABEL_NAMES, Instances
from bert_flax.data.pipeline import Batch, DataPosition
from bert_flax.data.token_corpus import TokenizedCorpus


def _locate(tokenized: TokenizedCorpus, start: int, end: int) -> tuple[int, list[int]]:
    """(document index, sentence indices within it) of the token span [start, end)."""
    first = int(np.searchsorted(tokenized.sentence_starts, start, side="right")) - 1
    last = int(np.searchsorted(tokenized.sentence_starts, end - 1, side="right")) - 1
    document = int(np.searchsorted(tokenized.document_starts, first, side="right")) - 1
    offset = int(tokenized.document_starts[document])
    return document, list(range(first - offset, last - offset + 1))


def example_records(
    data: PretrainingData, num: int, split: str = "train", max_eval_batches: int = 0
) -> list[dict[str, Any]]:
    """The first `num` examples of a split: the batch arrays per row plus tokens and provenance."""
    stream = data.train if split == "train" else data.eval
    if stream is None:
        return []
    records: list[dict[str, Any]] = []
    if split == "eval":
        for index in range(stream.num_eval_batches(max_eval_batches)):
            batch, instances = stream.eval_batch(index, max_eval_batches)
            records.extend(_rows(data, batch, instances, num - len(records)))
            if len(records) >= num:
                break
        return records
    position = DataPosition()
    while len(records) < num:
        batch, instances, position = stream.batch_at(position)
        records.extend(_rows(data, batch, instances, num - len(records)))
    return records


def _rows(data: PretrainingData, batch: Batch, instances: Instances, limit: int) -> list[dict[str, Any]]:
    rows = []
    for row in range(min(limit, len(batch["input_ids"]))):
        if "example_weights" in batch and batch["example_weights"][row] == 0:
            continue
        record: dict[str, Any] = {key: value[row].tolist() for key, value in batch.items() if key != "example_weights"}
        record["tokens"] = data.tokenizer.convert_ids_to_tokens(record["input_ids"])
        doc_a, sentences_a = _locate(data.tokenized, int(instances.a_start[row]), int(instances.a_end[row]))
        record.update(doc_a=doc_a, sentences_a=sentences_a)
        if instances.b_end[row] > instances.b_start[row]:
            doc_b, sentences_b = _locate(data.tokenized, int(instances.b_start[row]), int(instances.b_end[row]))
            record.update(doc_b=doc_b, sentences_b=sentences_b)
        rows.append(record)
    return rows


def render(record: dict[str, Any], index: int, nsp: bool, tokenizer: PreTrainedTokenizerBase) -> str:
    """A readable view: masked positions shown as [MASK→original], «random→original» or ‹kept›."""
    originals = {
        position: tokenizer.convert_ids_to_tokens(token_id)
        for position, token_id, weight in zip(record["masked_lm_positions"], record["masked_lm_ids"], record["masked_lm_weights"])
        if weight > 0
    }
    tokens = []
    for position, token in enumerate(record["tokens"]):
        if token == "[PAD]":
            break
        if position in originals:
            original = originals[position]
            if token == "[MASK]":
                token = f"[MASK→{original}]"
            elif token != original:
                token = f"«{token}→{original}»"
            else:
                token = f"‹{token}›"
        tokens.append(token)
    header = f"#{index}"
    if nsp:
        header += f"  {NSP_LABEL_NAMES[record['next_sentence_labels']]}"
    if "doc_a" in record:
        header += f"  A: doc {record['doc_a']} sentences {record['sentences_a']}"
        if "doc_b" in record:
            header += f"  B: doc {record['doc_b']} sentences {record['sentences_b']}"
    return header + "\n  " + " ".join(tokens)
