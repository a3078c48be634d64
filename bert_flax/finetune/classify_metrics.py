"""Classification metrics on the host, in NumPy: confusion matrix, accuracy, macro F1, a report.

Rows whose true label is -1 (a label the training data never had) are left out of every score: the model
cannot predict such a class, and the report counts them so they are not hidden.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

UNSEEN_LABEL_ID = -1


def confusion_matrix(label_ids_N: np.ndarray, predicted_ids_N: np.ndarray, num_labels: int) -> np.ndarray:
    """int64 [C, C] counts: row = true class, column = predicted class; rows labelled -1 are left out."""
    label_ids_N = np.asarray(label_ids_N)
    predicted_ids_N = np.asarray(predicted_ids_N)
    if label_ids_N.ndim != 1 or label_ids_N.shape != predicted_ids_N.shape:
        raise ValueError(f"labels {label_ids_N.shape} and predictions {predicted_ids_N.shape} must be equal-length 1-D")
    scored_N = label_ids_N != UNSEEN_LABEL_ID
    true_ids, predicted_ids = label_ids_N[scored_N].astype(np.int64), predicted_ids_N[scored_N].astype(np.int64)
    for name, ids in (("label", true_ids), ("predicted", predicted_ids)):
        if ids.size and (ids.min() < 0 or ids.max() >= num_labels):
            raise ValueError(f"{name} ids must lie in [0, {num_labels}), got {ids.min()}..{ids.max()}")
    flat_counts = np.bincount(true_ids * num_labels + predicted_ids, minlength=num_labels * num_labels)
    return flat_counts.reshape(num_labels, num_labels).astype(np.int64)


def per_class_scores(confusion_CxC: np.ndarray) -> dict[str, np.ndarray]:
    """precision_C, recall_C, f1_C (0 where undefined, as sklearn's zero_division=0) and support_C."""
    confusion_CxC = np.asarray(confusion_CxC, dtype=np.int64)
    true_positives_C = np.diag(confusion_CxC).astype(np.float64)
    predicted_C = confusion_CxC.sum(axis=0).astype(np.float64)
    support_C = confusion_CxC.sum(axis=1)
    precision_C = _safe_divide(true_positives_C, predicted_C)
    recall_C = _safe_divide(true_positives_C, support_C.astype(np.float64))
    f1_C = _safe_divide(2 * precision_C * recall_C, precision_C + recall_C)
    return {"precision": precision_C, "recall": recall_C, "f1": f1_C, "support": support_C}


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    quotient = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=quotient, where=denominator > 0)
    return quotient


def accuracy(label_ids_N: np.ndarray, predicted_ids_N: np.ndarray) -> float:
    """Fraction of scored rows (label != -1) predicted right; NaN when no row is scored."""
    label_ids_N = np.asarray(label_ids_N)
    scored_N = label_ids_N != UNSEEN_LABEL_ID
    if not scored_N.any():
        return float("nan")
    return float(np.mean(label_ids_N[scored_N] == np.asarray(predicted_ids_N)[scored_N]))


def macro_f1(label_ids_N: np.ndarray, predicted_ids_N: np.ndarray, num_labels: int) -> float:
    """Mean F1 over ALL `num_labels` classes of the label set; NaN when no row is scored.

    A class absent from both the truth and the predictions scores F1 0 and still counts, as in
    sklearn's `f1_score(average="macro", labels=range(C), zero_division=0)`: an eval set that lacks
    some training class therefore scores below 1 even when every prediction is right.
    """
    confusion_CxC = confusion_matrix(label_ids_N, predicted_ids_N, num_labels)
    return _macro_f1(confusion_CxC)


def _macro_f1(confusion_CxC: np.ndarray) -> float:
    if confusion_CxC.sum() == 0:
        return float("nan")
    return float(per_class_scores(confusion_CxC)["f1"].mean())


def classification_report(
    label_ids_N: np.ndarray, predicted_ids_N: np.ndarray, label_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix, as JSON-ready values.

    `num_scored` rows entered the scores; `num_unseen_labels` rows had label -1 and did not.
    """
    label_ids_N = np.asarray(label_ids_N)
    confusion_CxC = confusion_matrix(label_ids_N, predicted_ids_N, len(label_names))
    scores = per_class_scores(confusion_CxC)
    per_class = {
        name: {
            "precision": float(scores["precision"][index]),
            "recall": float(scores["recall"][index]),
            "f1": float(scores["f1"][index]),
            "support": int(scores["support"][index]),
        }
        for index, name in enumerate(label_names)
    }
    return {
        "accuracy": accuracy(label_ids_N, predicted_ids_N),
        "macro_f1": _macro_f1(confusion_CxC),
        "num_scored": int(confusion_CxC.sum()),
        "num_unseen_labels": int(np.sum(label_ids_N == UNSEEN_LABEL_ID)),
        "per_class": per_class,
        "confusion_matrix": confusion_CxC.tolist(),
    }
