"""Fine-tuning data: read the configured train/eval sources, encode them with the model's tokenizer,
and cut fixed-shape batches.

Training batches are a pure function of (seed, step): epoch e visits the rows in the order
`default_rng([seed, e]).permutation(N)`, `N // batch_size` batches per epoch (the remainder is
left out of that epoch), so a resumed run sees exactly the batches an uninterrupted one would.
Eval batches cover every row once; the last is padded with rows of weight 0.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from bert_flax.config import Config
from bert_flax.errors import UserError
from bert_flax.finetune.classify_data import (
    ClassificationExamples,
    LabelSet,
    encode,
    read_rows,
    select_columns,
    unseen_label_counts,
)
from bert_flax.finetune.qa_features import QAFeatures, make_features
from bert_flax.finetune.squad import QAExample, examples_from_records, read_squad

log = logging.getLogger(__name__)
Rows = dict[str, np.ndarray]


@dataclasses.dataclass
class ClassificationData:
    train: ClassificationExamples
    eval: ClassificationExamples | None
    labels: LabelSet


@dataclasses.dataclass
class QAData:
    train: list[QAExample]
    eval: list[QAExample] | None


@dataclasses.dataclass
class EncodedData:
    """Row arrays of equal length N per split; QA eval keeps its examples and windows for post-processing."""

    train: Rows
    eval: Rows | None
    eval_examples: list[QAExample] | None = None
    eval_features: QAFeatures | None = None


def _rows(config: Config, split: str) -> tuple[list[dict[str, Any]], str] | None:
    """(rows, source name) of the train or eval split; None for an eval split that is not configured."""
    data, settings = config.data, config.finetune
    path = settings.train_path if split == "train" else settings.eval_path
    if path:
        return read_rows(path), path
    if data.dataset:
        name = data.dataset_split if split == "train" else settings.dataset_eval_split
        if split == "eval" and not name:
            return None
        return read_rows(data.dataset, dataset_config=data.dataset_config or None, split=name), f"{data.dataset}:{name}"
    if split == "train":
        raise UserError("fine-tuning needs training data: pass finetune.train_path=FILE or data.dataset=NAME")
    return None


def read_classification(config: Config) -> ClassificationData:
    columns = (config.data.text_column, config.finetune.text_pair_column or None, config.finetune.label_column)
    train_rows, train_source = _rows(config, "train")
    train = select_columns(train_rows, *columns, train_source)
    eval_rows = _rows(config, "eval")
    evaluation = select_columns(eval_rows[0], *columns, eval_rows[1]) if eval_rows else None
    return ClassificationData(train, evaluation, LabelSet.from_labels(train.labels))


def read_qa(config: Config) -> QAData:
    version_2 = config.finetune.version_2

    def read(split: str) -> list[QAExample] | None:
        path = config.finetune.train_path if split == "train" else config.finetune.eval_path
        if path:
            return read_squad(path, version_2)
        found = _rows(config, split)
        return None if found is None else examples_from_records(found[0], version_2, found[1])

    return QAData(read("train"), read("eval"))


def encode_classification(data: ClassificationData, tokenizer: Any, max_seq_len: int) -> EncodedData:
    train, truncated = encode(data.train, tokenizer, max_seq_len, data.labels)
    if truncated:
        log.warning(
            "%d of %d training examples were truncated to data.max_seq_len=%d", truncated, len(data.train), max_seq_len
        )
    evaluation = None
    if data.eval is not None:
        evaluation, _ = encode(data.eval, tokenizer, max_seq_len, data.labels)
        unseen = unseen_label_counts(data.eval.labels, evaluation["labels"] >= 0)
        if unseen:
            shown = ", ".join(f"{label!r} ×{count}" for label, count in list(unseen.items())[:5])
            log.warning(
                "%d eval examples have labels the training data lacks (%s); they are left out of the scores",
                sum(unseen.values()),
                shown,
            )
    return EncodedData(train, evaluation)


def _feature_rows(features: QAFeatures) -> Rows:
    return {
        "input_ids": features.input_ids_NxL,
        "token_type_ids": features.token_type_ids_NxL,
        "attention_mask": features.attention_mask_NxL,
        "start_positions": features.start_positions_N,
        "end_positions": features.end_positions_N,
    }


def encode_qa(data: QAData, tokenizer: Any, config: Config) -> EncodedData:
    settings = (config.data.max_seq_len, config.finetune.doc_stride, config.finetune.max_query_len)
    train = _feature_rows(make_features(data.train, tokenizer, *settings))
    if data.eval is None:
        return EncodedData(train, None)
    features = make_features(data.eval, tokenizer, *settings)
    return EncodedData(train, _feature_rows(features), data.eval, features)


def batches_per_epoch(num_rows: int, batch_size: int) -> int:
    if num_rows < batch_size:
        raise UserError(
            f"the training data has {num_rows} examples (windows for QA), fewer than train.batch_size={batch_size}; "
            "lower train.batch_size or add data"
        )
    return num_rows // batch_size


def train_batch(rows: Rows, step: int, batch_size: int, seed: int) -> Rows:
    """The batch of optimizer step `step` (1-based)."""
    num_rows = len(next(iter(rows.values())))
    per_epoch = batches_per_epoch(num_rows, batch_size)
    epoch, index = divmod(step - 1, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_rows)
    picked = order[index * batch_size : (index + 1) * batch_size]
    return {key: value[picked] for key, value in rows.items()}


def eval_batches(rows: Rows, batch_size: int) -> list[Rows]:
    """Every row once, in order, with `example_weights` (0 for the padding of the last batch)."""
    num_rows = len(next(iter(rows.values())))
    padded = -(-num_rows // batch_size) * batch_size
    take = np.minimum(np.arange(padded), num_rows - 1)
    weights = (np.arange(padded) < num_rows).astype(np.float32)
    full = {**{key: value[take] for key, value in rows.items()}, "example_weights": weights}
    return [{key: value[i : i + batch_size] for key, value in full.items()} for i in range(0, padded, batch_size)]
