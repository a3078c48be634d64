"""SQuAD's exact match and token F1, with the official answer normalisation.

Normalisation, in the official order: lowercase; delete ASCII punctuation (deleted, not replaced by a
space: "don't" -> "dont"); delete the articles a/an/the as whole words; collapse whitespace. An
impossible question's gold is [""], so it scores 1 only when the prediction normalises to "".
"""

from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Sequence

from bert_flax.errors import UserError
from bert_flax.finetune.squad import QAExample

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """`text` as SQuAD compares it: lowercase, no punctuation, no articles, single spaces."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals some normalised gold answer, else 0.0."""
    prediction = normalize_answer(prediction)
    return float(any(prediction == gold for gold in _normalized_golds(golds)))


def f1(prediction: str, golds: Sequence[str]) -> float:
    """The best token-level F1 of the prediction against any gold answer (bags of normalised words)."""
    prediction_tokens = normalize_answer(prediction).split()
    return max(_token_f1(prediction_tokens, gold.split()) for gold in _normalized_golds(golds))


def squad_scores(predictions: Mapping[str, str], examples: Sequence[QAExample]) -> dict[str, float]:
    """`exact_match` and `f1` in percent over `examples`, and `total`.

    With impossible questions present, also `has_answer_*` and `no_answer_*` (each with its `_total`)
    for the answerable and the impossible questions, when there are any of each.
    """
    missing = [example.id for example in examples if example.id not in predictions]
    if missing:
        raise UserError(f"{len(missing)} question(s) have no prediction (first: {missing[0]}); predict every question")
    if not examples:
        raise UserError("there are no questions to score; check the evaluation data")
    exact_by_id = {example.id: exact_match(predictions[example.id], example.answer_texts) for example in examples}
    f1_by_id = {example.id: f1(predictions[example.id], example.answer_texts) for example in examples}
    scores = _percentages("", [example.id for example in examples], exact_by_id, f1_by_id)
    if any(example.is_impossible for example in examples):
        for prefix, impossible in (("has_answer_", False), ("no_answer_", True)):
            ids = [example.id for example in examples if example.is_impossible == impossible]
            if ids:
                scores.update(_percentages(prefix, ids, exact_by_id, f1_by_id))
    return scores


def _percentages(
    prefix: str, ids: list[str], exact_by_id: Mapping[str, float], f1_by_id: Mapping[str, float]
) -> dict[str, float]:
    return {
        f"{prefix}exact_match": 100.0 * sum(exact_by_id[i] for i in ids) / len(ids),
        f"{prefix}f1": 100.0 * sum(f1_by_id[i] for i in ids) / len(ids),
        f"{prefix}total": float(len(ids)),
    }


def _normalized_golds(golds: Sequence[str]) -> list[str]:
    """The non-empty normalised gold answers, or [""] when there are none (an impossible question)."""
    return [gold for gold in (normalize_answer(answer) for answer in golds) if gold] or [""]


def _token_f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    if not prediction_tokens or not gold_tokens:
        return float(prediction_tokens == gold_tokens)
    shared = sum((collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)).values())
    if shared == 0:
        return 0.0
    precision = shared / len(prediction_tokens)
    recall = shared / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)
