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
    """The first `num` rows of a split: the batch arrays of each row, its tokens, and per example (one, or
    several in a packed row) where it sits in the row and where it comes from."""
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


def _example(data: PretrainingData, instances: Instances, index: int) -> dict[str, Any]:
    """Documents and sentences of one instance's A and B."""
    example: dict[str, Any] = {}
    doc_a, sentences_a = _locate(data.tokenized, int(instances.a_start[index]), int(instances.a_end[index]))
    example.update(doc_a=doc_a, sentences_a=sentences_a)
    if instances.b_end[index] > instances.b_start[index]:
        doc_b, sentences_b = _locate(data.tokenized, int(instances.b_start[index]), int(instances.b_end[index]))
        example.update(doc_b=doc_b, sentences_b=sentences_b)
    return example


def _rows(data: PretrainingData, batch: Batch, instances: Instances, limit: int) -> list[dict[str, Any]]:
    """Records of the rows that hold a real example; `instances` are the rows' examples, row by row."""
    rows, first = [], 0
    for row in range(len(batch["input_ids"])):
        count = int(batch["segment_ids"][row].max())  # examples in the row
        first, indices = first + count, range(first, first + count)
        if len(rows) >= limit or not batch["example_weights"][row].any():
            continue
        record: dict[str, Any] = {key: value[row].tolist() for key, value in batch.items()}
        record["tokens"] = data.tokenizer.convert_ids_to_tokens(record["input_ids"])
        lengths = np.bincount(batch["segment_ids"][row], minlength=count + 1)[1:]
        record["examples"] = [
            {"slot": slot, "offset": record["cls_positions"][slot], "length": int(lengths[slot]),
             "next_sentence_label": record["next_sentence_labels"][slot], **_example(data, instances, index)}
            for slot, index in enumerate(indices)
        ]
        rows.append(record)
    return rows


def _marked(record: dict[str, Any], tokenizer: PreTrainedTokenizerBase, start: int, end: int) -> str:
    """Tokens [start, end) of a row, masked positions shown as [MASK→original], «random→original» or ‹kept›."""
    predictions = zip(record["masked_lm_positions"], record["masked_lm_ids"], record["masked_lm_weights"])
    originals = {position: tokenizer.convert_ids_to_tokens(token_id) for position, token_id, weight in predictions if weight}
    tokens = []
    for position in range(start, end):
        token = record["tokens"][position]
        if position in originals:
            original = originals[position]
            if token == "[MASK]":
                token = f"[MASK→{original}]"
            elif token != original:
                token = f"«{token}→{original}»"
            else:
                token = f"‹{token}›"
        tokens.append(token)
    return " ".join(tokens)


def _provenance(example: dict[str, Any], nsp: bool) -> str:
    shown = f"  {NSP_LABEL_NAMES[example['next_sentence_label']]}" if nsp else ""
    shown += f"  A: doc {example['doc_a']} sentences {example['sentences_a']}"
    if "doc_b" in example:
        shown += f"  B: doc {example['doc_b']} sentences {example['sentences_b']}"
    return shown


def render(record: dict[str, Any], index: int, nsp: bool, tokenizer: PreTrainedTokenizerBase) -> str:
    """A readable view of a row: its example (label, documents, tokens) after the row number; a packed row
    gets a header, then each example on its own line."""
    examples = record["examples"]
    if len(record["cls_positions"]) == 1:
        (example,) = examples
        return f"#{index}{_provenance(example, nsp)}\n  {_marked(record, tokenizer, 0, example['length'])}"
    used = sum(example["length"] for example in examples)
    lines = [f"#{index}  {len(examples)} example(s), {used}/{len(record['tokens'])} positions"]
    for example in examples:
        end = example["offset"] + example["length"]
        lines.append(f"  [{example['slot'] + 1}]{_provenance(example, nsp)}")
        lines.append(f"      {_marked(record, tokenizer, example['offset'], end)}")
    return "\n".join(lines)
