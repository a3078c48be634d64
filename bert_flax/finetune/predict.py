"""Inference with fine-tuned heads: sequence classification (label + probability) and extractive QA.

QA cuts the context into the same windows as fine-tuning (finetune/qa_features.py) and picks the best
span over them with the same rules (finetune/qa_postprocess.py). The window settings are those the
model was fine-tuned with when the source is a run (or its best/ or final/), else fine-tuning's defaults.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from bert_flax.config import FinetuneConfig, load_config
from bert_flax.errors import UserError
from bert_flax.finetune.heads import TASK_ARCHITECTURES
from bert_flax.finetune.qa_features import make_features
from bert_flax.finetune.qa_postprocess import span_predictions
from bert_flax.finetune.squad import QAExample
from bert_flax.interop.predict import BATCH_SIZE, Predictor, chunks
from bert_flax.run.layout import RunDir

DEFAULT_QA_SEQ_LEN = 384  # SQuAD's usual window, when the source carries no fine-tuning config


def classify(predictor: Predictor, texts: Sequence[str], pairs: Sequence[str | None] | None = None) -> list[dict]:
    """For every text (or text pair, where `pairs[i]` is not None): {label, probability} of the likeliest label."""
    predictor.require(TASK_ARCHITECTURES["classify"], "predict classify")
    pairs = list(pairs) if pairs is not None else [None] * len(texts)
    id2label = predictor.config.id2label
    results: list[dict] = [{} for _ in texts]
    for paired in (False, True):  # a batch is all single texts or all pairs
        indices = [i for i, pair in enumerate(pairs) if (pair is not None) == paired]
        for chunk in chunks(indices):
            batch = predictor.encode([texts[i] for i in chunk], [pairs[i] for i in chunk] if paired else None)
            probs_BxC = np.asarray(jax.nn.softmax(predictor.outputs(batch).logits, axis=-1))
            for i, probs_C in zip(chunk, probs_BxC):
                best = int(np.argmax(probs_C))
                results[i] = {"label": id2label.get(best, str(best)), "probability": float(probs_C[best])}
    return results


@dataclasses.dataclass(frozen=True)
class QASettings:
    max_seq_len: int
    finetune: FinetuneConfig  # doc_stride, max_query_len, n_best, max_answer_len, version_2, null_threshold


def qa_settings(predictor: Predictor) -> QASettings:
    """The fine-tuning run's window and answer settings, or the defaults for a model from elsewhere."""
    run_dir = _run_dir(predictor)
    if run_dir is None:
        return QASettings(min(DEFAULT_QA_SEQ_LEN, predictor.config.max_position_embeddings), FinetuneConfig())
    config = load_config(RunDir(run_dir).config)
    return QASettings(config.data.max_seq_len, config.finetune)


def _run_dir(predictor: Predictor) -> Path | None:
    """The run the source belongs to: the run itself, one of its steps, or its best/ or final/ directory."""
    if predictor.loaded.run_dir is not None:
        return predictor.loaded.run_dir
    parent = Path(predictor.source).expanduser().parent
    return parent if RunDir(parent).is_run() else None


def answer_questions(
    predictor: Predictor, context: str, questions: Sequence[str], settings: QASettings | None = None
) -> list[dict[str, Any]]:
    """For every question: {answer, score, start, end}; the answer is context[start:end] ("" and None: no answer).

    `score` is the span's start logit + end logit (None when no span was possible).
    """
    predictor.require(TASK_ARCHITECTURES["qa"], "predict qa")
    if not context.strip():
        raise UserError("the context is empty; pass --context TEXT or --context-file FILE with the text to search")
    if not questions:
        raise UserError("no question: pass questions as arguments or --file FILE (one per line)")
    settings = settings or qa_settings(predictor)
    tune = settings.finetune
    examples = [QAExample(str(i), q, context, (), (), is_impossible=True) for i, q in enumerate(questions)]
    features = make_features(examples, predictor.tokenizer, settings.max_seq_len, tune.doc_stride, tune.max_query_len)
    start_parts, end_parts = [], []
    for begin in range(0, features.num_features, BATCH_SIZE):
        window = slice(begin, begin + BATCH_SIZE)
        outputs = predictor.outputs(
            {
                "input_ids": features.input_ids_NxL[window],
                "attention_mask": features.attention_mask_NxL[window],
                "token_type_ids": features.token_type_ids_NxL[window],
            }
        )
        start_parts.append(np.asarray(outputs.start_logits, np.float32))
        end_parts.append(np.asarray(outputs.end_logits, np.float32))
    predictions = span_predictions(examples, features, np.concatenate(start_parts), np.concatenate(end_parts), tune)
    results = []
    for example in examples:
        found = predictions[example.id]
        start = end = None
        if found.text:
            offsets_Lx2 = features.offsets_NxLx2[found.window]
            start, end = int(offsets_Lx2[found.start_token, 0]), int(offsets_Lx2[found.end_token, 1])
        score = found.span_score if math.isfinite(found.span_score) else None
        results.append({"answer": found.text, "score": score, "start": start, "end": end})
    return results
