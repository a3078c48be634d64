"""Packed rows: whole examples placed into rows of `capacity` positions, from their lengths alone.

Each epoch's examples [0, U) are cut into groups of at most PACK_GROUP_EXAMPLES; a group is packed by
best-fit decreasing (at most `max_per_row` examples a row) and its rows put in a pseudo-random order.
The row stream is group 0's rows, then group 1's, ... over all epochs. Packing a group needs only its
examples' lengths, so every process can find the rows of any step, while tokens are gathered and masked
only for its own rows. Every example fits a row (its length is at most `capacity`), so none is dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from bert_flax.data.row_random import permute

# Examples packed together: large enough that a group's rows come out >= 98% full, small enough to pack in
# milliseconds (a group costs one pairing pass over its examples and a loop over them in Python).
PACK_GROUP_EXAMPLES = 4096


@dataclasses.dataclass(frozen=True)
class PackedRows:
    """Rows of examples: row r holds examples[row_starts[r]:row_starts[r + 1]] (int64 each)."""

    row_starts: np.ndarray  # [R + 1]
    examples: np.ndarray  # [N]

    @property
    def num_rows(self) -> int:
        return len(self.row_starts) - 1

    def take(self, rows_R: np.ndarray) -> "PackedRows":
        """The rows `rows_R`, in that order."""
        counts_R = self.row_starts[rows_R + 1] - self.row_starts[rows_R]
        starts_R1 = np.concatenate([[0], np.cumsum(counts_R)]).astype(np.int64)
        within_N = np.arange(starts_R1[-1]) - np.repeat(starts_R1[:-1], counts_R)
        return PackedRows(starts_R1, self.examples[np.repeat(self.row_starts[rows_R], counts_R) + within_N])

    @staticmethod
    def concatenate(parts: list["PackedRows"]) -> "PackedRows":
        offsets = np.cumsum([0] + [len(p.examples) for p in parts[:-1]])
        starts = [parts[0].row_starts[:1]] + [p.row_starts[1:] + o for p, o in zip(parts, offsets)]
        return PackedRows(np.concatenate(starts).astype(np.int64), np.concatenate([p.examples for p in parts]))


def best_fit_decreasing(lengths_N: np.ndarray, capacity: int, max_per_row: int) -> PackedRows:
    """Rows of the indices of `lengths_N` (each in [1, capacity]): longest first, each into the open row it
    fills best (least space left), a new row when none has room. Rows in the order they were opened,
    examples within a row in the order they were placed (decreasing length).

    Open rows are kept in buckets by free space; a bit per non-empty bucket finds the best fit in O(1).
    """
    order_N = np.argsort(-np.asarray(lengths_N), kind="stable")
    buckets: list[list[int]] = [[] for _ in range(capacity + 1)]  # free space → open rows (a stack)
    nonempty = 0  # bit c set: buckets[c] holds a row
    free: list[int] = []
    members: list[list[int]] = []
    for index, length in zip(order_N.tolist(), np.asarray(lengths_N)[order_N].tolist()):
        fitting = nonempty >> length
        if fitting:
            space = length + (fitting & -fitting).bit_length() - 1
            row = buckets[space].pop()
            if not buckets[space]:
                nonempty &= ~(1 << space)
        else:
            row, space = len(members), capacity
            members.append([])
            free.append(capacity)
        members[row].append(index)
        space -= length
        free[row] = space
        if space > 0 and len(members[row]) < max_per_row:
            buckets[space].append(row)
            nonempty |= 1 << space
    counts = [len(m) for m in members]
    row_starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
    return PackedRows(row_starts, np.asarray([i for m in members for i in m], dtype=np.int64))


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A known place in the row stream: `group` begins at row `first_row`."""

    group: int = 0
    first_row: int = 0


class RowStream:
    """The rows of packed groups, epoch after epoch, addressable by global row index.

    `lengths(examples)` gives the lengths of global examples (example g is g mod U of epoch g // U);
    `row_order_key(group)` keys the shuffle of a group's rows. Groups are packed on demand and the
    last few kept; the row count of every group packed is remembered, so finding where a row is never
    packs a group again.
    """

    def __init__(
        self,
        examples_per_epoch: int,
        lengths: Callable[[np.ndarray], np.ndarray],
        capacity: int,
        max_per_row: int,
        row_order_key: Callable[[int], np.uint64],
        group_examples: int = PACK_GROUP_EXAMPLES,
    ) -> None:
        self.examples_per_epoch, self.lengths, self.capacity = examples_per_epoch, lengths, capacity
        self.max_per_row, self.row_order_key, self.group_examples = max_per_row, row_order_key, group_examples
        self.groups_per_epoch = -(-examples_per_epoch // group_examples)
        self._cache: dict[int, PackedRows] = {}
        self._num_rows: dict[int, int] = {}  # group → its row count (an int per group packed so far)

    def group_examples_range(self, group: int) -> tuple[int, int]:
        """[first, end) global example indices of `group`."""
        epoch, index = divmod(group, self.groups_per_epoch)
        first = epoch * self.examples_per_epoch + index * self.group_examples
        return first, min(first + self.group_examples, (epoch + 1) * self.examples_per_epoch)

    def group(self, group: int) -> PackedRows:
        """The rows of `group` (global example indices), in their shuffled order."""
        if group not in self._cache:
            first, end = self.group_examples_range(group)
            lengths_N = self.lengths(np.arange(first, end, dtype=np.int64))
            packed = best_fit_decreasing(lengths_N, self.capacity, self.max_per_row)
            order_R = permute(np.arange(packed.num_rows), packed.num_rows, self.row_order_key(group))
            packed = packed.take(order_R)
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[group] = PackedRows(packed.row_starts, packed.examples + first)
            self._num_rows[group] = packed.num_rows
        return self._cache[group]

    def num_rows(self, group: int) -> int:
        """The row count of `group` (packed once, the first time it is asked for)."""
        if group not in self._num_rows:
            self.group(group)
        return self._num_rows[group]

    def anchor_of(self, row: int, start: Anchor = Anchor()) -> Anchor:
        """The anchor of the group holding global `row`, walking forward from `start` (at or before it):
        O(groups walked), each packed once."""
        if row < start.first_row:
            raise ValueError(f"row {row} is before the anchor {start}")
        anchor = start
        while row >= anchor.first_row + self.num_rows(anchor.group):
            anchor = Anchor(anchor.group + 1, anchor.first_row + self.num_rows(anchor.group))
        return anchor

    def rows(self, first_row: int, count: int, start: Anchor) -> PackedRows:
        """Global rows [first_row, first_row + count), `start` at or before the first."""
        anchor, parts = self.anchor_of(first_row, start), []
        row, end = first_row, first_row + count
        while row < end:
            packed = self.group(anchor.group)
            stop = min(end, anchor.first_row + packed.num_rows)
            parts.append(packed.take(np.arange(row - anchor.first_row, stop - anchor.first_row)))
            row = stop
            if row < end:
                anchor = Anchor(anchor.group + 1, anchor.first_row + packed.num_rows)
        return PackedRows.concatenate(parts)

    def rows_per_epoch(self, epoch: int = 0) -> int:
        """Rows of one epoch's groups (packs those not packed before)."""
        first = epoch * self.groups_per_epoch
        return sum(self.num_rows(j) for j in range(first, first + self.groups_per_epoch))
