"""Tests for counter-based randomness (bert_flax.data.row_random)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bert_flax.data.row_random import RowRandom, derive_key, mix, permute

KEY = derive_key(2026, 11, 30)


def fresh(rows, key=KEY) -> RowRandom:
    return RowRandom(key, np.asarray(rows, dtype=np.int64))


def test_mix_is_a_scrambling_bijection():
    x = np.arange(1 << 16, dtype=np.uint64)
    y = mix(x)
    assert y.dtype == np.uint64 and len(np.unique(y)) == len(x)
    # Neighbouring inputs flip about half of the 64 bits.
    flipped = np.bitwise_count(y[1:] ^ y[:-1])
    assert abs(flipped.mean() - 32) < 0.5
    np.testing.assert_array_equal(mix(x), y)  # a pure function


def test_derive_key_is_order_sensitive():
    assert isinstance(derive_key(1, 2), np.uint64)
    assert derive_key(1, 2) == derive_key(1, 2)
    keys = [derive_key(1, 2), derive_key(2, 1), derive_key(1), derive_key(2), derive_key(1, 2, 0), derive_key(0, 1, 2)]
    assert len({int(k) for k in keys}) == len(keys)
    assert derive_key(0) != derive_key()  # a zero part still counts
    # Large and negative parts are taken modulo 2^64.
    assert derive_key(-1) == derive_key(2**64 - 1)
    many = {int(derive_key(seed, stream, epoch)) for seed in range(10) for stream in range(4) for epoch in range(10)}
    assert len(many) == 400


@pytest.mark.parametrize("method", ["bits", "random", "integers", "binomial"])
def test_a_row_draws_the_same_whatever_the_other_rows(method):
    def calls(rng: RowRandom, rows_B: np.ndarray) -> list[np.ndarray]:
        n = len(rows_B)
        if method == "bits":
            return [rng.bits(3), rng.bits(1), rng.bits(5)]
        if method == "random":
            return [rng.random(n), rng.random((n, 4)), rng.random()]
        if method == "integers":
            return [rng.integers(0, 10, n), rng.integers(rows_B, rows_B + 5), rng.integers(0, 1000, (n, 3))]
        return [rng.binomial(rows_B % 200, 0.5), rng.binomial(np.full(n, 7), 0.5)]

    everything = calls(fresh(np.arange(10)), np.arange(10))
    for rows in ([5, 6], [6, 5], [9], [0, 3, 9, 1]):
        rows = np.array(rows)
        for full, part in zip(everything, calls(fresh(rows), rows)):
            np.testing.assert_array_equal(part, full[rows])
    # A different key draws different numbers.
    other = calls(fresh(np.arange(10), derive_key(0)), np.arange(10))
    assert not np.array_equal(other[0], everything[0])


def test_wider_draws_extend_narrower_ones():
    """Column j of a draw does not depend on how many columns are drawn (fresh objects, same draw number)."""
    rows = np.arange(50)
    np.testing.assert_array_equal(fresh(rows).bits(3)[:, :2], fresh(rows).bits(2))
    np.testing.assert_array_equal(fresh(rows).bits(100)[:, :1], fresh(rows).bits(1))
    np.testing.assert_array_equal(fresh(rows).random((50, 9))[:, :4], fresh(rows).random((50, 4)))
    np.testing.assert_array_equal(fresh(rows).random((50, 9))[:, 0], fresh(rows).random(50))
    # The draw number counts calls: the second draw differs from the first, and from other columns.
    rng = fresh(rows)
    first, second = rng.bits(2), rng.bits(2)
    assert not np.isin(second, first).any()
    assert len(np.unique(first)) == first.size  # rows and columns all differ


def test_uniform_draws():
    rng = fresh(np.arange(20_000) + 3 * 10**12)
    u = rng.random((20_000, 5))
    assert u.dtype == np.float64 and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005
    assert abs(u.var() - 1 / 12) < 0.002
    np.testing.assert_array_less(np.abs(np.histogram(u, bins=10, range=(0, 1))[0] / u.size - 0.1), 0.005)
    # Columns and successive draws are uncorrelated.
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03
    assert abs(np.corrcoef(u[:, 0], rng.random(20_000))[0, 1]) < 0.03
    assert rng.random().shape == (20_000,)


def test_integers_in_range():
    n = 20_000
    rng = fresh(np.arange(n))
    x = rng.integers(3, 10, n)
    assert x.dtype == np.int64 and x.min() == 3 and x.max() == 9
    np.testing.assert_allclose(np.bincount(x - 3) / n, 1 / 7, atol=0.01)
    # Per-row bounds, 1-D and 2-D.
    low = np.arange(n) % 50
    high = low + 1 + np.arange(n) % 7
    y = rng.integers(low, high)
    assert np.all((y >= low) & (y < high))
    assert np.all(y[high - low == 1] == low[high - low == 1])
    assert (y == high - 1)[high - low > 1].mean() > 0.1  # the top value is reached
    z = rng.integers(low, high, (n, 3))
    assert z.shape == (n, 3) and np.all((z >= low[:, None]) & (z < high[:, None]))
    # Huge ranges stay in range.
    big = rng.integers(0, 2**40, n)
    assert big.min() >= 0 and big.max() < 2**40 and big.max() > 2**39


def test_binomial():
    n = 20_000
    rng = fresh(np.arange(n))
    for trials in (0, 1, 5, 63, 64, 65, 200):
        k = rng.binomial(np.full(n, trials), 0.5)
        assert k.dtype == np.int64 and k.min() >= 0 and k.max() <= trials
        assert abs(k.mean() - trials / 2) < 0.05 + 0.02 * trials, (trials, k.mean())
        if trials:
            assert abs(k.var() - trials / 4) < 0.1 * trials / 4 + 0.02, (trials, k.var())
        # The whole distribution: Binomial(trials, 1/2), both extremes reached when likely.
        pmf = np.array([math.comb(trials, i) for i in range(trials + 1)], dtype=np.float64) / 2.0**trials
        observed = np.bincount(k, minlength=trials + 1) / n
        assert np.all(np.abs(observed - pmf) <= 5 * np.sqrt(pmf * (1 - pmf) / n) + 1e-9), (trials, observed, pmf)
        if trials <= 8:
            assert k.min() == 0 and k.max() == trials
    # Per-row n, mixed sizes in one call.
    trials = np.arange(n) % 150
    k = rng.binomial(trials, 0.5)
    assert np.all((k >= 0) & (k <= trials))
    assert np.all(k[trials == 0] == 0)
    assert abs(k.mean() - trials.mean() / 2) < 0.1
    assert fresh([]).binomial(np.zeros(0, dtype=np.int64), 0.5).shape == (0,)
    with pytest.raises(ValueError):
        rng.binomial(trials, 0.3)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 1000, 4097])
def test_permute_is_a_bijection(n):
    index = np.arange(n)
    perm = permute(index, n, KEY)
    assert perm.dtype == np.int64
    np.testing.assert_array_equal(np.sort(perm), index)
    # Evaluated per index: any subset, in any order, gives the same values.
    pick = np.random.default_rng(n).permutation(n)[: max(1, n // 3)]
    np.testing.assert_array_equal(permute(pick, n, KEY), perm[pick])
    if n >= 7:  # shuffled, and by the key
        assert not np.array_equal(perm, index)
        others = [permute(index, n, derive_key(k)) for k in range(3)]
        assert all(not np.array_equal(perm, o) for o in others)
    if n >= 1000:
        assert np.mean(perm == index) < 0.01
        # Different keys give nearly unrelated orders.
        assert np.mean(permute(index, n, derive_key(1)) == permute(index, n, derive_key(2))) < 0.01
        assert abs(np.corrcoef(index, perm)[0, 1]) < 0.1
