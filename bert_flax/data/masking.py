"""Dynamic MLM masking of a whole batch at once, in NumPy.

Per sequence, round(mask_prob × maskable tokens) positions (at least 1, at most P) are selected;
of those, `mask_replace_prob` become [MASK], `random_replace_prob` a random token, the rest stay.
Special tokens ([CLS], [SEP], [PAD]) are never maskable. Selection is an argsort of random
scores, so there is no Python loop over rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bert_flax.config import MaskingConfig

IGNORE_INDEX = -100  # Hugging Face's "no MLM label here"


@dataclasses.dataclass(frozen=True)
class MaskedTokens:
    input_ids_BxL: np.ndarray  # int32, with replacements applied
    masked_lm_positions_BxP: np.ndarray  # int32, ascending within the real predictions, 0 in padding
    masked_lm_ids_BxP: np.ndarray  # int32, the original tokens, 0 in padding
    masked_lm_weights_BxP: np.ndarray  # float32, 1 for a real prediction, 0 for padding


def _selection_order(
    maskable_BxL: np.ndarray, word_start_BxL: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """Positions ordered by a random key: maskable first; with whole words, a word's pieces together."""
    batch, length = maskable_BxL.shape
    scores_BxL = rng.random((batch, length))
    if word_start_BxL is not None:
        word_id_BxL = np.cumsum(word_start_BxL & maskable_BxL, axis=1) - 1
        scores_BxL = np.take_along_axis(scores_BxL, np.maximum(word_id_BxL, 0), axis=1)
    scores_BxL = np.where(maskable_BxL, scores_BxL, 2.0)
    position_BxL = np.broadcast_to(np.arange(length), (batch, length))
    return np.lexsort((position_BxL, scores_BxL), axis=-1)


def _whole_word_counts(
    order_BxL: np.ndarray, maskable_BxL: np.ndarray, word_start_BxL: np.ndarray, wanted_B: np.ndarray
) -> np.ndarray:
    """How many leading tokens of `order` to select so that only whole words are taken.

    Words are taken in order while the running token count stays within `wanted`; when even the
    first word is longer, the first `wanted` of its pieces are taken (so at least one prediction).
    """
    starts_BxL = np.take_along_axis(word_start_BxL & maskable_BxL, order_BxL, axis=1)
    valid_BxL = np.take_along_axis(maskable_BxL, order_BxL, axis=1)
    # A word ends in `order` where the next token starts a new word or is not maskable.
    ends_BxL = valid_BxL & np.concatenate([starts_BxL[:, 1:] | ~valid_BxL[:, 1:], np.ones_like(valid_BxL[:, :1])], axis=1)
    count_BxL = np.arange(1, order_BxL.shape[1] + 1)
    fits_BxL = ends_BxL & (count_BxL <= wanted_B[:, None])
    whole_B = np.where(fits_BxL, count_BxL, 0).max(axis=1)
    return np.where(whole_B > 0, whole_B, wanted_B)


def mask_tokens(
    input_ids_BxL: np.ndarray,
    maskable_BxL: np.ndarray,
    config: MaskingConfig,
    num_predictions: int,
    mask_id: int,
    random_ids: np.ndarray,
    rng: np.random.Generator,
    word_start_BxL: np.ndarray | None = None,
) -> MaskedTokens:
    """Select and replace tokens for MLM. Pass `word_start_BxL` to mask whole words."""
    batch, length = input_ids_BxL.shape
    order_BxL = _selection_order(maskable_BxL, word_start_BxL, rng)
    num_maskable_B = maskable_BxL.sum(axis=1)
    # Round half up; the epsilon keeps 0.35 × 90 = 31.4999… (in binary) rounding to 32.
    wanted_B = np.floor(num_maskable_B * config.mask_prob + 0.5 + 1e-9).astype(np.int64)
    wanted_B = np.minimum(np.clip(wanted_B, 1, num_predictions), num_maskable_B)
    if word_start_BxL is not None:
        wanted_B = _whole_word_counts(order_BxL, maskable_BxL, word_start_BxL, wanted_B)

    slots = min(num_predictions, length)
    valid_BxP = np.arange(num_predictions)[None, :] < wanted_B[:, None]
    positions_BxP = np.zeros((batch, num_predictions), dtype=np.int64)
    positions_BxP[:, :slots] = order_BxL[:, :slots]
    # Real predictions in ascending position order, padding (position `length`) last, then 0.
    positions_BxP = np.sort(np.where(valid_BxP, positions_BxP, length), axis=1)
    positions_BxP = np.where(valid_BxP, positions_BxP, 0)

    rows_B1 = np.arange(batch)[:, None]
    original_BxP = input_ids_BxL[rows_B1, positions_BxP]
    draw_BxP = rng.random((batch, num_predictions))
    random_BxP = random_ids[rng.integers(0, len(random_ids), size=(batch, num_predictions))]
    replacement_BxP = np.where(
        draw_BxP < config.mask_replace_prob,
        mask_id,
        np.where(draw_BxP < config.mask_replace_prob + config.random_replace_prob, random_BxP, original_BxP),
    )
    masked_ids_BxL = input_ids_BxL.copy()
    masked_ids_BxL[np.nonzero(valid_BxP)[0], positions_BxP[valid_BxP]] = replacement_BxP[valid_BxP]
    return MaskedTokens(
        input_ids_BxL=masked_ids_BxL.astype(np.int32),
        masked_lm_positions_BxP=positions_BxP.astype(np.int32),
        masked_lm_ids_BxP=np.where(valid_BxP, original_BxP, 0).astype(np.int32),
        masked_lm_weights_BxP=valid_BxP.astype(np.float32),
    )


def to_hf_labels(batch: dict[str, np.ndarray]) -> np.ndarray:
    """int32 [B, L] MLM labels in Hugging Face's form: the original id where predicted, -100 elsewhere."""
    input_ids_BxL = batch["input_ids"]
    labels_BxL = np.full(input_ids_BxL.shape, IGNORE_INDEX, dtype=np.int32)
    rows_BxP, cols_BxP = np.nonzero(batch["masked_lm_weights"] > 0)
    positions = batch["masked_lm_positions"][rows_BxP, cols_BxP]
    labels_BxL[rows_BxP, positions] = batch["masked_lm_ids"][rows_BxP, cols_BxP]
    return labels_BxL
