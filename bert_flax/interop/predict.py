"""Inference with the pre-training heads: fill-mask and next-sentence, batched.

`Predictor` serves any head class (architectures.py); the fine-tuned heads' tasks are in finetune/predict.py.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import jax
import numpy as np

from bert_flax.data.pairing import NSP_LABEL_NAMES
from bert_flax.errors import UserError
from bert_flax.interop.sources import load_model_source
from bert_flax.model.architectures import PRETRAINING, architecture_of, check_heads, require

log = logging.getLogger(__name__)
BATCH_SIZE = 32


class Predictor:
    """A model SOURCE with its tokenizer, ready for batched forward passes."""

    def __init__(self, source: str) -> None:
        loaded = load_model_source(source)
        self.source, self.loaded = source, loaded
        self.config, self.params = loaded.config, loaded.params
        self.architecture = architecture_of(self.config)
        check_heads(self.architecture, self.params, loaded.description)
        self.tokenizer = loaded.load_tokenizer()
        self.model = self.architecture.flax_class(self.config, _do_init=False)
        self._forward = jax.jit(lambda params, batch: self.model(**batch, params=params))

    def require(self, architecture: str, verb: str) -> None:
        """A UserError unless the source has the head `verb` needs."""
        require(self.architecture, architecture, self.loaded.description, verb)

    def outputs(self, batch: dict[str, np.ndarray]) -> Any:
        """The head model's output dataclass for one batch (float32 logits)."""
        return self._forward(self.params, batch)

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        max_length = self.config.max_position_embeddings
        full = self.tokenizer(list(texts), list(pairs) if pairs else None, truncation=False)["input_ids"]
        too_long = [i for i, ids in enumerate(full) if len(ids) > max_length]
        if too_long:
            log.warning("%d input(s) exceed the model's %d positions and were truncated", len(too_long), max_length)
        return dict(
            self.tokenizer(
                list(texts),
                list(pairs) if pairs else None,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="np",
            )
        )

    def logits(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(MLM logits BxLxV, NSP logits Bx2) of a pre-training model."""
        outputs = self.outputs(batch)
        return np.asarray(outputs.prediction_logits), np.asarray(outputs.seq_relationship_logits)


def chunks(items: Sequence[Any], size: int = BATCH_SIZE) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def fill_mask(predictor: Predictor, texts: Sequence[str], top_k: int = 5) -> list[list[list[dict[str, Any]]]]:
    """For every text, for every [MASK] in it: the top_k {token, id, probability}, most likely first."""
    predictor.require(PRETRAINING, "predict fill-mask")
    mask = predictor.tokenizer.mask_token
    missing = [text for text in texts if mask not in text]
    if missing:
        raise UserError(
            f"fill-mask input has no {mask}: {missing[0][:80]!r}; put {mask} where a word should be predicted"
        )
    if top_k < 1:
        raise UserError(f"--top-k must be at least 1; got {top_k}")
    results = []
    for chunk in chunks(list(texts)):
        batch = predictor.encode(chunk)
        logits_BxLxV, _ = predictor.logits(batch)
        for row, ids in enumerate(batch["input_ids"]):
            predictions = []
            for position in np.flatnonzero(ids == predictor.tokenizer.mask_token_id):
                probs_V = np.asarray(jax.nn.softmax(logits_BxLxV[row, position]))
                best = np.argsort(-probs_V)[:top_k]
                predictions.append(
                    [
                        {
                            "token": predictor.tokenizer.convert_ids_to_tokens(int(i)),
                            "id": int(i),
                            "probability": float(probs_V[i]),
                        }
                        for i in best
                    ]
                )
            results.append(predictions)
    return results


def next_sentence(predictor: Predictor, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """For every (A, B): IsNext or NotNext with its probability."""
    predictor.require(PRETRAINING, "predict next-sentence")
    results = []
    for chunk in chunks(list(pairs)):
        batch = predictor.encode([a for a, _ in chunk], [b for _, b in chunk])
        _, nsp_logits_Bx2 = predictor.logits(batch)
        for probs in np.asarray(jax.nn.softmax(nsp_logits_Bx2, axis=-1)):
            label = int(np.argmax(probs))
            results.append(
                {"label": NSP_LABEL_NAMES[label], "probability": float(probs[label]), "is_next_probability": float(probs[0])}
            )
    return results
