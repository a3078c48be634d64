"""From start/end logits over the windows of each example back to an answer string.

For every window, the candidates are the `n_best` highest start logits × the `n_best` highest end
logits among its context tokens, kept when end >= start and the span has at most `max_answer_len`
tokens; a span scores start logit + end logit. The best span over all windows of the example wins.
Ties are broken deterministically: the earlier window, then the earlier start token, then the shorter
span (and the lower token index among equal logits when picking the top `n_best`).

SQuAD v2: the null score of an example is the lowest `start[0] + end[0]` ([CLS]) over its windows.
The prediction is "" when `null_score - best_span_score > null_threshold`; a larger threshold answers
more often, and a tie answers.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from bert_flax.config import FinetuneConfig
from bert_flax.finetune.qa_features import NOT_CONTEXT, QAFeatures
from bert_flax.finetune.squad import QAExample


@dataclasses.dataclass(frozen=True)
class SpanPrediction:
    """The chosen answer of one example with its scores; `text` is "" when no span (or the null) won.

    `span_score` is -inf and `window` is -1 when no window had a valid span; `null_score` is None outside v2.
    """

    text: str
    span_score: float
    null_score: float | None
    window: int
    start_token: int
    end_token: int


def best_answers(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits_NxL: np.ndarray,
    end_logits_NxL: np.ndarray,
    settings: FinetuneConfig = FinetuneConfig(),
) -> dict[str, str]:
    """The answer text of every example, keyed by example id (see the module docstring for the rules);
    `settings`: n_best, max_answer_len, version_2 and null_threshold."""
    predictions = span_predictions(examples, features, start_logits_NxL, end_logits_NxL, settings)
    return {example_id: prediction.text for example_id, prediction in predictions.items()}


def span_predictions(
    examples: Sequence[QAExample],
    features: QAFeatures,
    start_logits_NxL: np.ndarray,
    end_logits_NxL: np.ndarray,
    settings: FinetuneConfig = FinetuneConfig(),
) -> dict[str, SpanPrediction]:
    """Like `best_answers`, with the span and null scores (for tuning `null_threshold`) and the token span."""
    expected = features.offsets_NxLx2.shape[:2]
    if start_logits_NxL.shape != expected or end_logits_NxL.shape != expected:
        raise ValueError(
            f"logits have shapes {start_logits_NxL.shape} and {end_logits_NxL.shape}; the features need {expected}"
        )
    start_NxL = np.asarray(start_logits_NxL, dtype=np.float64)
    end_NxL = np.asarray(end_logits_NxL, dtype=np.float64)
    windows_of_example: list[list[int]] = [[] for _ in examples]
    for window, example_index in enumerate(features.example_index_N):
        windows_of_example[example_index].append(window)
    predictions = {}
    for example, windows in zip(examples, windows_of_example):
        best = (-np.inf, -1, 0, 0)  # (score, window, start, end)
        for window in windows:
            score, start, end = _best_span_in_window(
                start_NxL[window], end_NxL[window], features.offsets_NxLx2[window], settings.n_best, settings.max_answer_len
            )
            if score > best[0]:  # strictly better: an equal score keeps the earlier window
                best = (score, window, start, end)
        score, window, start, end = best
        text = "" if window < 0 else _span_text(example.context, features.offsets_NxLx2[window], start, end)
        null_score = None
        if settings.version_2 and windows:
            null_score = float(min(start_NxL[w, 0] + end_NxL[w, 0] for w in windows))
            if null_score - score > settings.null_threshold:
                text = ""
        predictions[example.id] = SpanPrediction(text, float(score), null_score, window, start, end)
    return predictions


def _best_span_in_window(
    start_L: np.ndarray, end_L: np.ndarray, offsets_Lx2: np.ndarray, n_best: int, max_answer_len: int
) -> tuple[float, int, int]:
    """(score, start, end) of the window's best valid span, or (-inf, 0, 0) when it has none."""
    context_L = np.flatnonzero(offsets_Lx2[:, 0] != NOT_CONTEXT)
    if context_L.size == 0:
        return -np.inf, 0, 0
    # Stable sort of the negated logits: highest first, equal logits in token order.
    starts_S = context_L[np.argsort(-start_L[context_L], kind="stable")[:n_best]]
    ends_E = context_L[np.argsort(-end_L[context_L], kind="stable")[:n_best]]
    length_SxE = ends_E[None, :] - starts_S[:, None] + 1
    valid_SxE = (length_SxE >= 1) & (length_SxE <= max_answer_len)
    if not valid_SxE.any():
        return -np.inf, 0, 0
    score_SxE = start_L[starts_S][:, None] + end_L[ends_E][None, :]
    rows, cols = np.nonzero(valid_SxE)
    candidate_starts, candidate_ends = starts_S[rows], ends_E[cols]
    # lexsort's last key is the primary one: highest score, then earlier start, then shorter span.
    best = np.lexsort((candidate_ends, candidate_starts, -score_SxE[rows, cols]))[0]
    return float(score_SxE[rows[best], cols[best]]), int(candidate_starts[best]), int(candidate_ends[best])


def _span_text(context: str, offsets_Lx2: np.ndarray, start: int, end: int) -> str:
    return context[offsets_Lx2[start, 0] : offsets_Lx2[end, 1]]
