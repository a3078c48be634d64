"""Tests for dynamic MLM masking (bert_flax.data.masking) on synthetic NumPy batches."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from bert_flax.config import MaskingConfig
from bert_flax.data.masking import IGNORE_INDEX, mask_tokens, to_hf_labels

# A fake vocabulary: specials, then "text" ids, then ids only a random replacement can produce,
# so that a replaced token is always distinguishable from an unchanged one.
PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
TEXT_LOW, TEXT_HIGH = 5, 1000
RANDOM_IDS = np.arange(1000, 1500, dtype=np.int32)


def synthetic_batch(
    rng: np.random.Generator, batch: int, length: int, min_text: int = 1, pairs: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """[CLS] A [SEP] (B [SEP]) [PAD]… rows with random text lengths.

    Returns (input_ids int32 [B, L], maskable bool [B, L], len_a [B], len_b [B]).
    """
    text_B = rng.integers(min_text, length - 3 + 1, size=batch)  # A + B text tokens
    len_a_B = rng.integers(1, text_B + 1) if pairs else text_B
    len_b_B = text_B - len_a_B
    j_1xL = np.arange(length)[None, :]
    la, lb = len_a_B[:, None], len_b_B[:, None]
    in_a = (j_1xL >= 1) & (j_1xL <= la)
    in_b = (lb > 0) & (j_1xL >= la + 2) & (j_1xL < la + 2 + lb)
    sep = (j_1xL == la + 1) | ((lb > 0) & (j_1xL == la + 2 + lb))
    text = rng.integers(TEXT_LOW, TEXT_HIGH, size=(batch, length))
    input_ids = np.where(in_a | in_b, text, PAD)
    input_ids = np.where(sep, SEP, input_ids)
    input_ids[:, 0] = CLS
    return input_ids.astype(np.int32), in_a | in_b, len_a_B, len_b_B


def expected_counts(maskable_BxL: np.ndarray, mask_prob: float, num_predictions: int) -> np.ndarray:
    """round-half-up(mask_prob × maskable) in exact decimal arithmetic, clipped to [1, P], ≤ maskable."""
    p = Fraction(str(mask_prob))
    counts = [math.floor(p * int(m) + Fraction(1, 2)) for m in maskable_BxL.sum(axis=1)]
    counts = np.clip(np.asarray(counts), 1, num_predictions)
    return np.minimum(counts, maskable_BxL.sum(axis=1))


def selected_mask(out, batch: int, length: int) -> np.ndarray:
    """bool [B, L]: the positions with a real prediction."""
    selected = np.zeros((batch, length), dtype=bool)
    rows, cols = np.nonzero(out.masked_lm_weights_BxP > 0)
    selected[rows, out.masked_lm_positions_BxP[rows, cols]] = True
    return selected


def run(input_ids, maskable, config, num_predictions, seed=0, word_start=None):
    return mask_tokens(
        input_ids, maskable, config, num_predictions, MASK, RANDOM_IDS, np.random.default_rng(seed), word_start
    )


@pytest.fixture(scope="module")
def batch_4096() -> tuple[np.ndarray, np.ndarray]:
    input_ids, maskable, _, _ = synthetic_batch(np.random.default_rng(1), 4096, 128)
    return input_ids, maskable


def check_contract(out, input_ids, maskable, num_predictions, expected_count=None):
    """Structural checks every masking output must satisfy; returns the bool [B, L] selection."""
    batch, length = input_ids.shape
    positions, lm_ids, weights = out.masked_lm_positions_BxP, out.masked_lm_ids_BxP, out.masked_lm_weights_BxP
    assert out.input_ids_BxL.shape == (batch, length) and out.input_ids_BxL.dtype == np.int32
    for array, dtype in ((positions, np.int32), (lm_ids, np.int32), (weights, np.float32)):
        assert array.shape == (batch, num_predictions) and array.dtype == dtype
    assert set(np.unique(weights).tolist()) <= {0.0, 1.0}
    count_B = (weights > 0).sum(axis=1)
    # Real predictions first, then padding slots.
    np.testing.assert_array_equal(weights > 0, np.arange(num_predictions)[None, :] < count_B[:, None])
    if expected_count is not None:
        np.testing.assert_array_equal(count_B, expected_count)
    valid = weights > 0
    # Padding slots: position 0, id 0, weight 0.
    assert np.all(positions[~valid] == 0) and np.all(lm_ids[~valid] == 0)
    # Real positions strictly ascending (hence unique) within a row, and in range.
    both_valid = valid[:, 1:] & valid[:, :-1]
    assert np.all(np.diff(positions, axis=1)[both_valid] > 0)
    assert np.all((positions >= 0) & (positions < length))
    rows_BxP = np.broadcast_to(np.arange(batch)[:, None], positions.shape)
    # Never a special / non-maskable position.
    assert np.all(maskable[rows_BxP[valid], positions[valid]])
    # The labels are the ORIGINAL ids.
    np.testing.assert_array_equal(lm_ids[valid], input_ids[rows_BxP[valid], positions[valid]])
    selected = selected_mask(out, batch, length)
    assert selected.sum() == valid.sum()
    # Nothing outside the selection changes.
    np.testing.assert_array_equal(out.input_ids_BxL[~selected], input_ids[~selected])
    return selected


@pytest.mark.parametrize(
    ("mask_prob", "num_predictions"),
    [(0.15, 20), (0.15, 5), (0.5, 20), (0.2, 128), (1.0, 128), (0.1, 1)],
)
def test_exact_count_and_contract(batch_4096, mask_prob, num_predictions):
    input_ids, maskable = batch_4096
    config = MaskingConfig(mask_prob=mask_prob)
    out = run(input_ids, maskable, config, num_predictions)
    expected = expected_counts(maskable, mask_prob, num_predictions)
    assert expected.min() >= 1
    check_contract(out, input_ids, maskable, num_predictions, expected)
    if num_predictions < 128 * mask_prob:  # the cap must actually have been hit somewhere
        assert np.any(expected == num_predictions)


def test_short_rows_get_at_least_one_and_at_most_maskable():
    rng = np.random.default_rng(2)
    input_ids, maskable, _, _ = synthetic_batch(rng, 512, 16, min_text=1)
    # Rows with 1..13 maskable tokens: count is max(1, round) and never more than maskable.
    out = run(input_ids, maskable, MaskingConfig(mask_prob=1.0), 32)
    check_contract(out, input_ids, maskable, 32, maskable.sum(axis=1))
    out = run(input_ids, maskable, MaskingConfig(mask_prob=0.01), 32)
    check_contract(out, input_ids, maskable, 32, np.ones(512, dtype=np.int64))
    # More prediction slots than positions.
    out = run(input_ids, maskable, MaskingConfig(mask_prob=0.5), 40)
    check_contract(out, input_ids, maskable, 40, expected_counts(maskable, 0.5, 40))


def test_row_without_maskable_tokens_predicts_nothing():
    input_ids = np.array([[CLS, SEP, PAD, PAD], [CLS, 7, SEP, PAD]], dtype=np.int32)
    maskable = np.array([[False] * 4, [False, True, False, False]])
    out = run(input_ids, maskable, MaskingConfig(), 3)
    check_contract(out, input_ids, maskable, 3, np.array([0, 1]))
    np.testing.assert_array_equal(out.input_ids_BxL[0], input_ids[0])


def test_maskable_position_zero_is_replaced():
    """A prediction at position 0 must not be undone by the padding slots (which also point at 0)."""
    input_ids = np.tile(np.arange(10, 20, dtype=np.int32), (64, 1))
    maskable = np.ones_like(input_ids, dtype=bool)
    config = MaskingConfig(mask_prob=0.2, mask_replace_prob=1.0, random_replace_prob=0.0)
    out = run(input_ids, maskable, config, 4)
    selected = check_contract(out, input_ids, maskable, 4, np.full(64, 2))
    assert selected[:, 0].any()  # position 0 was drawn in some rows
    assert np.all(out.input_ids_BxL[selected] == MASK)


def replacement_fractions(out, input_ids, selected) -> tuple[float, float, float, np.ndarray]:
    new, original = out.input_ids_BxL[selected], input_ids[selected]
    is_mask = new == MASK
    is_same = new == original
    is_random = ~is_mask & ~is_same
    return is_mask.mean(), is_random.mean(), is_same.mean(), new[is_random]


@pytest.mark.parametrize(("mask_replace_prob", "random_replace_prob"), [(0.8, 0.1), (0.5, 0.3), (0.0, 1.0)])
def test_replacement_split(mask_replace_prob, random_replace_prob):
    rng = np.random.default_rng(3)
    input_ids, maskable, _, _ = synthetic_batch(rng, 8192, 128, min_text=64)
    config = MaskingConfig(mask_prob=0.15, mask_replace_prob=mask_replace_prob, random_replace_prob=random_replace_prob)
    out = run(input_ids, maskable, config, 20, seed=4)
    selected = check_contract(out, input_ids, maskable, 20)
    assert selected.sum() > 100_000
    frac_mask, frac_random, frac_same, random_tokens = replacement_fractions(out, input_ids, selected)
    assert abs(frac_mask - mask_replace_prob) < 0.01, frac_mask
    assert abs(frac_random - random_replace_prob) < 0.01, frac_random
    assert abs(frac_same - (1 - mask_replace_prob - random_replace_prob)) < 0.01, frac_same
    # Random replacements only ever come from random_ids (and use many of them).
    assert np.isin(random_tokens, RANDOM_IDS).all()
    if random_replace_prob > 0:
        assert len(np.unique(random_tokens)) > len(RANDOM_IDS) // 2


def test_mask_only_rule_masks_every_selected_token(batch_4096):
    input_ids, maskable = batch_4096
    config = MaskingConfig(mask_replace_prob=1.0, random_replace_prob=0.0)
    out = run(input_ids, maskable, config, 20)
    selected = check_contract(out, input_ids, maskable, 20, expected_counts(maskable, 0.15, 20))
    assert np.all(out.input_ids_BxL[selected] == MASK)
    assert not np.any(out.input_ids_BxL[~selected] == MASK)


def test_keep_rule_changes_nothing(batch_4096):
    input_ids, maskable = batch_4096
    out = run(input_ids, maskable, MaskingConfig(mask_replace_prob=0.0, random_replace_prob=0.0), 20)
    check_contract(out, input_ids, maskable, 20)
    np.testing.assert_array_equal(out.input_ids_BxL, input_ids)


@pytest.mark.parametrize("mask_prob", [0.15, 0.3])
def test_masked_fraction_when_cap_not_binding(mask_prob):
    rng = np.random.default_rng(5)
    input_ids, maskable, _, _ = synthetic_batch(rng, 4096, 128, min_text=64)
    out = run(input_ids, maskable, MaskingConfig(mask_prob=mask_prob), 128)
    selected = check_contract(out, input_ids, maskable, 128)
    fraction = selected.sum() / maskable.sum()
    assert abs(fraction - mask_prob) < 0.005, fraction
    # Every maskable position gets selected about equally often (no positional bias).
    per_position = selected.sum(axis=0)[1:60] / maskable.sum(axis=0)[1:60]
    assert np.all(np.abs(per_position - mask_prob) < 0.04), per_position


def synthetic_words(rng: np.random.Generator, len_a: np.ndarray, len_b: np.ndarray, length: int) -> np.ndarray:
    """bool [B, L] word starts: words of 1–4 pieces tiling A (from 1) and B (from len_a + 2)."""
    batch = len(len_a)
    word_start = np.zeros((batch, length), dtype=bool)
    for first, size in ((np.ones(batch, dtype=np.int64), len_a), (len_a + 2, len_b)):
        words = rng.integers(1, 5, size=(batch, length))
        offsets = np.concatenate([np.zeros((batch, 1), dtype=np.int64), np.cumsum(words, axis=1)[:, :-1]], axis=1)
        inside = offsets < size[:, None]
        rows = np.broadcast_to(np.arange(batch)[:, None], offsets.shape)
        word_start[rows[inside], (first[:, None] + offsets)[inside]] = True
    return word_start


def test_whole_word_masking():
    rng = np.random.default_rng(6)
    batch, length, num_predictions, mask_prob = 4096, 64, 10, 0.15
    input_ids, maskable, len_a, len_b = synthetic_batch(rng, batch, length)
    word_start = synthetic_words(rng, len_a, len_b, length)
    assert np.all(maskable[word_start])
    out = run(input_ids, maskable, MaskingConfig(mask_prob=mask_prob, whole_word_mask=True), num_predictions,
              word_start=word_start)
    selected = check_contract(out, input_ids, maskable, num_predictions)
    wanted = expected_counts(maskable, mask_prob, num_predictions)

    # Word index of every maskable position, then selected pieces and size per (row, word).
    word_id = np.cumsum(word_start, axis=1) - 1
    keys = (np.arange(batch)[:, None] * length + word_id)[maskable]
    size = np.bincount(keys, minlength=batch * length).reshape(batch, length)
    taken = np.bincount(keys, weights=selected[maskable], minlength=batch * length).reshape(batch, length)
    assert np.all(size[word_start.sum(axis=1)[:, None] <= np.arange(length)] == 0)
    assert size.max() <= 4

    partial = (taken > 0) & (taken < size)
    count = selected.sum(axis=1)
    partial_rows = partial.any(axis=1)
    # A row with a partially selected word: that single word is longer than the wanted count and
    # holds the whole selection, exactly `wanted` of its pieces.
    for row in np.flatnonzero(partial_rows):
        (word,) = np.flatnonzero(taken[row] > 0)
        assert size[row, word] > wanted[row]
        assert count[row] == wanted[row]
    # Every other row: whole words only, as many as fit in `wanted` (a word is at most 4 pieces).
    whole = ~partial_rows
    assert np.all(count[whole] <= wanted[whole])
    assert np.all(count[whole] >= np.minimum(np.maximum(wanted[whole] - 3, 1), maskable.sum(axis=1)[whole]))
    # Both cases actually occur, and multi-piece words are selected whole.
    assert 0 < partial_rows.sum() < batch // 4
    assert ((taken == size) & (size > 1)).sum() > 1000
    assert ((taken > 0).sum(axis=1) > 1).sum() > batch // 2


def test_determinism(batch_4096):
    input_ids, maskable = batch_4096
    config = MaskingConfig()
    a, b, c = (run(input_ids, maskable, config, 20, seed=s) for s in (7, 7, 8))
    for name in ("input_ids_BxL", "masked_lm_positions_BxP", "masked_lm_ids_BxP", "masked_lm_weights_BxP"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.masked_lm_positions_BxP, c.masked_lm_positions_BxP)
    assert not np.array_equal(a.input_ids_BxL, c.input_ids_BxL)
    # The input is not modified in place.
    np.testing.assert_array_equal(input_ids, synthetic_batch(np.random.default_rng(1), 4096, 128)[0])


def test_to_hf_labels(batch_4096):
    input_ids, maskable = batch_4096
    out = run(input_ids, maskable, MaskingConfig(), 20)
    batch = {
        "input_ids": out.input_ids_BxL,
        "masked_lm_positions": out.masked_lm_positions_BxP,
        "masked_lm_ids": out.masked_lm_ids_BxP,
        "masked_lm_weights": out.masked_lm_weights_BxP,
    }
    labels = to_hf_labels(batch)
    assert labels.shape == input_ids.shape and labels.dtype == np.int32
    selected = selected_mask(out, *input_ids.shape)
    expected = np.where(selected, input_ids, IGNORE_INDEX)
    np.testing.assert_array_equal(labels, expected)
    # Position 0 ([CLS]) is where the padding slots point; it must not get a label.
    assert np.all(labels[:, 0] == IGNORE_INDEX)
    assert (labels != IGNORE_INDEX).sum() == (out.masked_lm_weights_BxP > 0).sum()
