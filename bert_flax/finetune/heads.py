"""transformers' Flax task models on a pre-trained encoder: `FlaxBertForSequenceClassification` and
`FlaxBertForQuestionAnswering`, with the encoder from `model.init` (any SOURCE, incl. our runs).

The task head starts from the seeded random init; the encoder ("bert" subtree) is the source's,
minus the pooler for question answering (HF's QA model has none).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import numpy as np
from transformers import BertConfig, BertTokenizerFast

from bert_flax.config import Config
from bert_flax.data.tokenizer import load_tokenizer
from bert_flax.errors import UserError
from bert_flax.interop.sources import load_model_source
from bert_flax.model.architectures import ARCHITECTURES
from bert_flax.model.pretraining import check_max_seq_len, compute_dtype, init_params, preset_config

log = logging.getLogger(__name__)
TASK_ARCHITECTURES = {"classify": "BertForSequenceClassification", "qa": "BertForQuestionAnswering"}


@dataclasses.dataclass
class TaskModel:
    model: Any  # the task architecture's Flax class, built with _do_init=False in the compute dtype
    params: Any  # float32: {"bert": ..., "classifier" | "qa_outputs": ...}
    tokenizer: BertTokenizerFast
    source: str  # what the encoder came from ("random init (preset tiny)" or the SOURCE)

    @property
    def config(self) -> BertConfig:
        return self.model.config


def head_config(base: BertConfig, task: str, labels: list[str] | None) -> BertConfig:
    """`base` with the task's head fields: label maps for classification, 2 outputs (start, end) for QA."""
    values = base.to_dict()
    values["architectures"] = [TASK_ARCHITECTURES[task]]
    if task == "classify":
        values["id2label"] = {index: label for index, label in enumerate(labels or [])}
        values["label2id"] = {label: index for index, label in enumerate(labels or [])}
    else:
        values.pop("id2label", None), values.pop("label2id", None)
        values["num_labels"] = 2
    return BertConfig.from_dict(values)


def build_task_model(config: Config, labels: list[str] | None = None) -> TaskModel:
    """The configured task model; `labels` (classification) fixes the head's outputs and label maps."""
    task = config.finetune.task
    if task == "classify" and not labels:
        raise UserError("the training data has no labels; check finetune.label_column")
    if config.model.init:
        loaded = load_model_source(config.model.init, config.train.seed)
        tokenizer, base, encoder = loaded.load_tokenizer(), loaded.config, loaded.params.get("bert")
        source = loaded.description
        if encoder is None:
            raise UserError(f"model.init={config.model.init} has no BERT encoder ('bert' parameters)")
    else:
        if config.tokenizer.train:
            raise UserError(
                "fine-tuning needs an existing tokenizer: set tokenizer.name (or model.init) and tokenizer.train=false"
            )
        tokenizer = load_tokenizer(config.tokenizer)
        base, encoder = preset_config(config.model.preset, len(tokenizer)), None
        source = f"random init (preset {config.model.preset})"
    check_max_seq_len(config.data.max_seq_len, base, source)
    bert_config = head_config(base, task, labels)
    flax_class = ARCHITECTURES[TASK_ARCHITECTURES[task]].flax_class
    model = flax_class(bert_config, dtype=compute_dtype(config.model.dtype), _do_init=False)
    params = jax.tree.map(np.asarray, jax.device_get(init_params(model, config.train.seed)))
    if encoder is not None:
        params["bert"] = _take_encoder(params["bert"], encoder, config.model.init)
    return TaskModel(model, params, tokenizer, source)


def _take_encoder(initial: dict, encoder: dict, source: str) -> dict:
    """The source's weights for every group of the task model's encoder (shapes checked)."""
    taken = {}
    for group, values in initial.items():
        if group == "pooler" and group not in encoder:  # a QA model has none: start it from the random init
            log.warning("model.init=%s has no pooler weights; they start from random init", source)
            taken[group] = values
            continue
        if group not in encoder or jax.tree.structure(encoder[group]) != jax.tree.structure(values):
            raise UserError(f"model.init={source} has no BERT encoder weights for {group!r} of this layout")
        for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(values), jax.tree.leaves(encoder[group])):
            if np.shape(got) != np.shape(want):
                raise UserError(
                    f"model.init={source}: {group}{jax.tree_util.keystr(path)} has shape {np.shape(got)}, "
                    f"the model expects {np.shape(want)}"
                )
        taken[group] = jax.tree.map(lambda x: np.asarray(x, np.float32), encoder[group])
    return taken
