"""Counter-based randomness: every draw is a pure function of (key, row, draw, column).

A process that builds rows 64..127 of a batch draws exactly the numbers that a single process
building rows 0..255 draws for those rows, so per-host batches concatenate to the global batch
bit for bit, and any row of any epoch can be rebuilt from its index alone (exact resume).
The mixer is SplitMix64's finaliser; a Feistel network over it gives a permutation of [0, n)
that is evaluated per index, so an epoch's shuffle is never materialised.
"""

from __future__ import annotations

import enum

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_FEISTEL_ROUNDS = 4


class Stream(enum.IntEnum):
    """Every independent random stream of the data side, the first part of its key after the seed.

    One registry, so two uses never share a stream by accident; a new use takes a new number.
    """

    SPLIT = 0  # which documents are held out for evaluation
    PAIRING = 1  # training examples: the unit order of each epoch, pairing and truncation
    MASKING = 2  # MLM masking, keyed further by the example stream (PAIRING or EVAL)
    EVAL = 3  # held-out examples: unit order, pairing and truncation
    PACKING = 4  # the order of the packed rows of each group, keyed further by the example stream and the group
    TOKENIZER_SAMPLE = 7  # the windows of a corpus a trained vocabulary is learned from (seed 0)


def mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 that scrambles every bit."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64)
        x = (x ^ (x >> np.uint64(30))) * _MUL1
        x = (x ^ (x >> np.uint64(27))) * _MUL2
        return x ^ (x >> np.uint64(31))


def derive_key(*parts: int) -> np.uint64:
    """One uint64 key from integers (seed, stream, epoch, ...); order matters."""
    key = np.zeros((), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for part in parts:
            key = mix(key + _GOLDEN + np.uint64(part & 0xFFFFFFFFFFFFFFFF))
    return np.uint64(key)


class RowRandom:
    """Random draws for a set of rows, addressed by their global indices.

    Successive calls give independent draws (each call is a new `draw` number), so code written
    for `np.random.Generator` (`random`, `integers`) runs unchanged on it, row by row.
    """

    def __init__(self, key: np.uint64, rows_B: np.ndarray) -> None:
        with np.errstate(over="ignore"):
            self._row_keys_B = mix(np.asarray(rows_B, dtype=np.uint64) * _GOLDEN + key)
        self._draw = 0

    def bits(self, width: int) -> np.ndarray:
        """uint64 [B, width] of independent random bits."""
        self._draw += 1
        columns = np.arange(width, dtype=np.uint64) + np.uint64(self._draw << 32)
        with np.errstate(over="ignore"):
            return mix(self._row_keys_B[:, None] ^ mix(columns)[None, :])

    def random(self, size: tuple[int, int] | int | None = None) -> np.ndarray:
        """float64 uniform in [0, 1): [B, width] for size=(B, width), [B] for size=B or None."""
        width = size[1] if isinstance(size, tuple) else 1
        uniform_BxW = (self.bits(width) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
        return uniform_BxW if isinstance(size, tuple) else uniform_BxW[:, 0]

    def integers(self, low: np.ndarray | int, high: np.ndarray | int, size: tuple[int, int] | int | None = None) -> np.ndarray:
        """int64 uniform in [low, high) (per row when low/high are [B] arrays)."""
        uniform = self.random(size)
        low, high = np.asarray(low), np.asarray(high)
        if uniform.ndim == 2 and low.ndim == 1:
            low, high = low[:, None], high[:, None]
        return low + np.minimum((uniform * (high - low)).astype(np.int64), np.maximum(high - low - 1, 0))

    def binomial(self, n_B: np.ndarray, p: float) -> np.ndarray:
        """int64 [B]: Binomial(n, 1/2) per row, as the popcount of n random bits (only p = 0.5)."""
        if p != 0.5:
            raise ValueError("RowRandom.binomial draws only p = 0.5")
        n_B = np.asarray(n_B, dtype=np.int64)
        words = max(1, int(-(-int(n_B.max(initial=0)) // 64)))
        bits_BxW = self.bits(words)
        full_B1 = n_B[:, None] - 64 * np.arange(words)[None, :]
        keep_BxW = np.where(
            full_B1 >= 64,
            np.uint64(0xFFFFFFFFFFFFFFFF),
            (np.uint64(1) << np.clip(full_B1, 0, 63).astype(np.uint64)) - np.uint64(1),
        )
        return np.bitwise_count(bits_BxW & keep_BxW).sum(axis=1).astype(np.int64)


def permute(index: np.ndarray, n: int, key: np.uint64) -> np.ndarray:
    """A pseudo-random permutation of [0, n) evaluated at `index` (int64 array, values in [0, n)).

    A balanced Feistel network on the smallest even number of bits covering n, with cycle walking:
    values that land outside [0, n) are permuted again until they land inside (the network is a
    bijection of [0, 4^k), so this terminates and stays a bijection of [0, n)).
    """
    index = np.asarray(index, dtype=np.int64)
    if n <= 1:
        return np.zeros_like(index)
    half_bits = max(1, (int(n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half_bits) - 1)
    round_keys = [derive_key(int(key), r) for r in range(_FEISTEL_ROUNDS)]

    def network(x: np.ndarray) -> np.ndarray:
        left, right = x >> np.uint64(half_bits), x & mask
        for round_key in round_keys:
            with np.errstate(over="ignore"):
                left, right = right, left ^ (mix(right + round_key) & mask)
        return (left << np.uint64(half_bits)) | right

    x = network(index.astype(np.uint64))
    outside = x >= np.uint64(n)
    while outside.any():
        x[outside] = network(x[outside])
        outside = x >= np.uint64(n)
    return x.astype(np.int64)
