"""The BERT head classes bert-flax loads, exports, verifies and predicts with, chosen by a config's `architectures`.

Pre-training (MLM + NSP) is the default: a config naming no known head (None, "BertModel",
"BertForMaskedLM", ...) is treated as `BertForPreTraining`, as bert-flax always has. The fine-tuned
heads of `bert-flax finetune` name theirs ("BertForSequenceClassification", "BertForQuestionAnswering").
"""

from __future__ import annotations

import dataclasses
from typing import Any

from transformers import (
    BertConfig,
    FlaxBertForPreTraining,
    FlaxBertForQuestionAnswering,
    FlaxBertForSequenceClassification,
)

from bert_flax.data.pairing import NSP_LABEL_NAMES
from bert_flax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Output:
    """One logits output compared by `export --verify`: its short name, model attribute and whether it is per token."""

    name: str
    attribute: str
    per_token: bool


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str  # transformers' PyTorch class, and config.json's `architectures` entry
    flax_class: type
    heads: tuple[str, ...]  # top-level parameter groups besides "bert"
    outputs: tuple[Output, ...]
    title: str  # for messages
    pipeline_tag: str  # the hub's task tag
    made_by: str  # where a model with this head comes from, for error messages
    card_title: str  # the heading of an export's model card
    card_note: str  # what a user of the export must know about its outputs

    @property
    def torch_class(self) -> type:
        import transformers

        return getattr(transformers, self.name)


PRETRAINING = "BertForPreTraining"
ARCHITECTURES = {
    arch.name: arch
    for arch in (
        Architecture(
            PRETRAINING,
            FlaxBertForPreTraining,
            ("cls",),
            (Output("mlm", "prediction_logits", True), Output("nsp", "seq_relationship_logits", False)),
            "pre-training heads (MLM + NSP)",
            "fill-mask",
            "a `bert-flax pretrain` run or a pre-trained BERT",
            "BERT pre-trained with bert-flax (MLM + NSP)",
            "NSP labels follow Hugging Face: " + ", ".join(f"logit {i} = {n}" for i, n in enumerate(NSP_LABEL_NAMES)),
        ),
        Architecture(
            "BertForSequenceClassification",
            FlaxBertForSequenceClassification,
            ("classifier",),
            (Output("logits", "logits", False),),
            "a sequence-classification head",
            "text-classification",
            "a `bert-flax finetune classify` run (or its best/ or final/)",
            "BERT fine-tuned with bert-flax for sequence classification",
            "Labels: config.json's id2label.",
        ),
        Architecture(
            "BertForQuestionAnswering",
            FlaxBertForQuestionAnswering,
            ("qa_outputs",),
            (Output("start", "start_logits", True), Output("end", "end_logits", True)),
            "a question-answering head",
            "question-answering",
            "a `bert-flax finetune qa` run (or its best/ or final/)",
            "BERT fine-tuned with bert-flax for extractive question answering",
            "Outputs start and end logits over the tokens of `[CLS] question [SEP] context [SEP]`.",
        ),
    )
}


def architecture_named(names: list[str] | None) -> Architecture:
    """The first known entry of a config's `architectures` list; pre-training when none is known."""
    for name in names or ():
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    return ARCHITECTURES[PRETRAINING]


def architecture_of(config: BertConfig) -> Architecture:
    return architecture_named(getattr(config, "architectures", None))


def check_heads(architecture: Architecture, params: Any, description: str) -> None:
    """`params` must hold the encoder and the heads of `architecture` (a run's config and checkpoint can disagree)."""
    missing = [group for group in ("bert", *architecture.heads) if group not in params]
    if missing:
        raise UserError(
            f"{description} is configured as {architecture.name} but its weights lack {', '.join(missing)} "
            f"(they hold {', '.join(sorted(params))}); pass a source whose config and weights belong together"
        )


def require(architecture: Architecture, wanted: str, description: str, verb: str) -> None:
    """A UserError unless the source has the `wanted` head: `verb` cannot use another one."""
    if architecture.name != wanted:
        other = ARCHITECTURES[wanted]
        raise UserError(
            f"{description} has {architecture.title} ({architecture.name}); {verb} needs {other.title}: "
            f"pass {other.made_by}"
        )
