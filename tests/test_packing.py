"""Packed rows (data.packing): the packer, the row stream, and packed batches of the real corpus.

An example must be the same packed or not (same pair, same masks), every example of an epoch is used
once, the batch at a step is a function of the step (resume, processes), and rows come out >= 95% full.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import BATCH_KEYS

from bert_flax.config import DataConfig, MaskingConfig
from bert_flax.data.packing import Anchor, PackedRows, RowStream, best_fit_decreasing
from bert_flax.data.pipeline import DataPosition, PretrainingStream
from bert_flax.data.row_random import Stream, derive_key

MAX_SEQ_LEN = 64


def check_packed(rows: PackedRows, lengths_N: np.ndarray, capacity: int, max_per_row: int) -> None:
    """Every example exactly once, no row over capacity or over `max_per_row` examples."""
    np.testing.assert_array_equal(np.sort(rows.examples), np.arange(len(lengths_N)))
    counts_R = np.diff(rows.row_starts)
    assert counts_R.min() >= 1 and counts_R.max() <= max_per_row
    used_R = np.add.reduceat(lengths_N[rows.examples], rows.row_starts[:-1])
    assert used_R.max() <= capacity


def test_best_fit_decreasing_by_hand() -> None:
    # Decreasing: 7 opens row 0 (3 left), 6 row 1 (4 left), 4 fits row 1 exactly, 3 fits row 0 exactly,
    # 2 opens row 2, 1 joins it (best fit: the only row with room).
    rows = best_fit_decreasing(np.array([3, 7, 1, 4, 6, 2]), capacity=10, max_per_row=4)
    assert [rows.examples[a:b].tolist() for a, b in itertools.pairwise(rows.row_starts)] == [[1, 0], [4, 3], [5, 2]]
    # At most 2 a row: 7 + 3 close row 0, 6 + 4 row 1; 2 + 1 row 2.
    capped = best_fit_decreasing(np.array([3, 7, 1, 4, 6, 2, 1]), capacity=12, max_per_row=2)
    check_packed(capped, np.array([3, 7, 1, 4, 6, 2, 1]), 12, 2)
    assert capped.num_rows == 4


@pytest.mark.parametrize("max_per_row", [1, 2, 16])
def test_best_fit_decreasing_finds_exact_fits(max_per_row: int) -> None:
    """Lengths that pair up into full rows (a, 128 − a): best fit closes every row full."""
    halves = np.random.default_rng(0).integers(1, 128, size=1500)
    lengths = np.random.default_rng(1).permutation(np.concatenate([halves, 128 - halves]))
    rows = best_fit_decreasing(lengths, 128, max_per_row)
    check_packed(rows, lengths, 128, max_per_row)
    assert rows.num_rows == (len(lengths) if max_per_row == 1 else len(halves))


def test_row_stream_over_several_groups_and_epochs() -> None:
    """Groups of 100 of 250 examples an epoch: every epoch's rows hold each of its examples once; any slice
    of rows is the same whatever anchor it starts from."""
    lengths_U = np.random.default_rng(1).integers(3, 40, size=250)
    stream = RowStream(250, lambda g: lengths_U[g % 250], 64, 4, lambda group: derive_key(0, group), group_examples=100)
    assert stream.groups_per_epoch == 3 and stream.group_examples_range(4) == (350, 450)
    for epoch in range(2):
        rows = PackedRows.concatenate([stream.group(3 * epoch + j) for j in range(3)])
        check_packed(PackedRows(rows.row_starts, rows.examples - 250 * epoch), lengths_U, 64, 4)
    total = stream.rows_per_epoch(0) + stream.rows_per_epoch(1)
    everything = stream.rows(0, total, Anchor())
    for first, count in ((0, 7), (5, 40), (stream.group(0).num_rows - 2, 5), (total - 9, 9)):
        part = stream.rows(first, count, Anchor())
        expected = everything.take(np.arange(first, first + count))
        np.testing.assert_array_equal(part.row_starts, expected.row_starts)
        np.testing.assert_array_equal(part.examples, expected.examples)
        anchor = stream.anchor_of(first)
        assert anchor.first_row <= first < anchor.first_row + stream.group(anchor.group).num_rows
        np.testing.assert_array_equal(stream.rows(first, count, anchor).examples, expected.examples)
    with pytest.raises(ValueError):
        stream.anchor_of(0, stream.anchor_of(total - 1))
    # Rows are shuffled within a group: not in the packer's (longest first) order.
    group = stream.group(0)
    first_lengths = [lengths_U[group.examples[a]] for a in group.row_starts[:-1]]
    assert first_lengths != sorted(first_lengths, reverse=True)


def test_finding_rows_packs_each_group_once() -> None:
    """More groups than the stream keeps packed: counting an epoch's rows and walking to its last rows again
    and again (what every packed eval batch does) packs each group once."""
    lengths_U = np.random.default_rng(2).integers(3, 40, size=700)
    packed_firsts: list[int] = []

    def lengths(examples_N: np.ndarray) -> np.ndarray:
        packed_firsts.append(int(examples_N[0]))
        return lengths_U[examples_N % 700]

    stream = RowStream(700, lengths, 64, 4, lambda group: derive_key(0, group), group_examples=100)
    total = stream.rows_per_epoch()
    for _ in range(3):
        assert stream.rows_per_epoch() == total
        stream.rows(total - 3, 3, Anchor())
    assert sorted(packed_firsts) == list(range(0, 700, 100))


@pytest.fixture(scope="module")
def make_stream(corpus_data, corpus_path):
    tokenized, ids = corpus_data

    def make(packing=True, nsp=True, pairing="segments", batch_size=32, max_seq_len=MAX_SEQ_LEN, per_row=8, **kwargs):
        data = DataConfig(
            path=str(corpus_path), max_seq_len=max_seq_len, pairing=pairing, packing=packing, max_examples_per_row=per_row
        )
        split = kwargs.pop("in_split_D", np.ones(tokenized.num_documents, dtype=bool))
        return PretrainingStream(
            tokenized, ids, split, data, kwargs.pop("masking", MaskingConfig()), nsp=nsp, seed=0,
            batch_size=batch_size, **kwargs,
        )

    return make


def example_slices(batch: dict[str, np.ndarray]) -> list[tuple[int, int, int, int]]:
    """(row, slot, offset, length) of every real example of a packed batch, row by row."""
    found = []
    for row in range(len(batch["input_ids"])):
        lengths = np.bincount(batch["segment_ids"][row], minlength=batch["cls_positions"].shape[1] + 1)[1:]
        for slot in np.flatnonzero(batch["example_weights"][row]):
            found.append((row, int(slot), int(batch["cls_positions"][row, slot]), int(lengths[slot])))
    return found


def assert_same_examples(packed: dict[str, np.ndarray], alone: dict[str, np.ndarray]) -> None:
    """Every example of the packed batch, cut out of its row, is its own one-example row (`alone`, in the
    same order): tokens, types, positions, masks and label."""
    slices = example_slices(packed)
    assert len(slices) == len(alone["input_ids"])
    for k, (row, slot, offset, length) in enumerate(slices):
        assert length == alone["attention_mask"][k].sum()
        span = slice(offset, offset + length)
        for key in ("input_ids", "token_type_ids", "position_ids"):
            np.testing.assert_array_equal(packed[key][row, span], alone[key][k, :length], err_msg=key)
        assert np.all(packed["segment_ids"][row, span] == slot + 1)
        assert packed["next_sentence_labels"][row, slot] == alone["next_sentence_labels"][k, 0]
        predicted = packed["masked_lm_weights"][row] > 0
        here = predicted & (packed["masked_lm_positions"][row] >= offset) & (packed["masked_lm_positions"][row] < offset + length)
        own = alone["masked_lm_weights"][k] > 0
        np.testing.assert_array_equal(packed["masked_lm_positions"][row][here] - offset, alone["masked_lm_positions"][k][own])
        np.testing.assert_array_equal(packed["masked_lm_ids"][row][here], alone["masked_lm_ids"][k][own])
    for row in range(len(packed["input_ids"])):  # after the last example: padding only
        used = packed["attention_mask"][row].sum()
        assert np.all(packed["attention_mask"][row, :used] == 1) and np.all(packed["segment_ids"][row, used:] == 0)


@pytest.mark.parametrize(
    ("nsp", "pairing", "whole_word_mask"), [(True, "segments", False), (True, "sentences", True), (False, "segments", False)]
)
def test_packed_batches_hold_the_unpacked_examples(make_stream, nsp, pairing, whole_word_mask) -> None:
    masking = MaskingConfig(whole_word_mask=whole_word_mask)
    stream = make_stream(nsp=nsp, pairing=pairing, masking=masking, max_seq_len=128)
    assert stream.num_predictions == masking.num_predictions(128, 8) > masking.num_predictions(128)
    for step in (0, 5):
        batch, instances, _ = stream.batch_at(stream.position(step))
        assert set(batch) == BATCH_KEYS and batch["cls_positions"].shape == (32, 8)
        assert batch["masked_lm_positions"].shape == (32, stream.num_predictions)
        examples = stream.row_stream.rows(step * 32, 32, Anchor()).examples
        alone, alone_instances = stream.rows(examples)  # the same examples, one per row
        assert_same_examples(batch, alone)
        fresh = stream.instances(examples)  # drawn anew, not taken from the packed group's instances
        for instance_set in (instances, alone_instances):
            for name in ("a_start", "a_end", "b_start", "b_end", "next_sentence_labels"):
                np.testing.assert_array_equal(getattr(instance_set, name), getattr(fresh, name), err_msg=name)
        assert batch["example_weights"].sum() > 1.2 * 32  # rows hold several examples


def test_every_example_of_an_epoch_once_and_rows_nearly_full(make_stream) -> None:
    stream = make_stream(batch_size=16)
    rows_per_epoch = stream.row_stream.rows_per_epoch(0)
    steps = -(-2 * rows_per_epoch // 16)
    batches = [batch for batch, _ in itertools.islice(stream.iterate(), steps)]
    examples = stream.row_stream.rows(0, rows_per_epoch, Anchor()).examples
    np.testing.assert_array_equal(np.sort(examples), np.arange(stream.examples_per_epoch))
    epoch1 = stream.row_stream.rows(rows_per_epoch, stream.row_stream.rows_per_epoch(1), Anchor()).examples
    np.testing.assert_array_equal(np.sort(epoch1), stream.examples_per_epoch + np.arange(stream.examples_per_epoch))
    counted = sum(b["example_weights"].sum() for b in batches)
    assert counted >= 2 * stream.examples_per_epoch  # two epochs of rows, nothing dropped
    mask = np.concatenate([b["attention_mask"] for b in batches])[: 2 * rows_per_epoch]
    assert mask.mean() >= 0.95


@pytest.mark.parametrize(("max_seq_len", "nsp"), [(128, True), (128, False), (512, True), (512, False)])
def test_packing_efficiency_on_the_corpus(make_stream, max_seq_len, nsp) -> None:
    """The issue's goal: >= 95% of a row's positions hold text, at 128 and 512 (max_examples_per_row 16)."""
    stream = make_stream(nsp=nsp, max_seq_len=max_seq_len, per_row=16)
    group = stream.row_stream.group(0)
    used = stream.example_lengths(group.examples).sum()
    assert used / (group.num_rows * max_seq_len) >= 0.95


def test_resume_and_processes(make_stream) -> None:
    """Positions carry the group, so a saved one continues exactly; a position without it (an old or
    hand-made one) finds the same rows by walking the groups; N processes' rows are the batch."""
    stream = make_stream(batch_size=64)
    rows_per_epoch = stream.row_stream.rows_per_epoch(0)
    crossing = rows_per_epoch // 64  # its batch spans the end of epoch 0
    run = list(itertools.islice(stream.iterate(), crossing + 3))
    assert run[crossing][1].group == 1 and run[crossing][1].epoch == 1
    for step in (crossing - 1, crossing, crossing + 1):
        saved = run[step - 1][1]
        assert saved == stream.position(step)
        for start in (saved, DataPosition(step=step)):
            batch, _, after = make_stream(batch_size=64).batch_at(start)
            assert after == run[step][1]
            for key in batch:
                np.testing.assert_array_equal(batch[key], run[step][0][key], err_msg=key)
        for count in (2, 4):
            local = [stream.batch_at(saved, index, count)[0] for index in range(count)]
            for key in BATCH_KEYS:
                np.testing.assert_array_equal(np.concatenate([b[key] for b in local]), run[step][0][key], err_msg=key)


def test_packed_eval_scores_the_unpacked_examples(corpus_data, make_stream) -> None:
    held_out = np.random.default_rng(0).random(corpus_data[0].num_documents) < 0.2
    packed = make_stream(in_split_D=held_out, stream=Stream.EVAL, batch_size=16)
    unpacked = make_stream(packing=False, in_split_D=held_out, stream=Stream.EVAL, batch_size=16)
    for max_batches in (0, 3):
        count = packed.num_eval_rows(max_batches)
        assert count == unpacked.num_eval_rows(max_batches)
        batches = packed.eval_batches(max_batches)
        assert len(batches) == packed.num_eval_batches(max_batches) <= unpacked.num_eval_batches(max_batches)
        instances = [packed.eval_batch(i, max_batches)[1] for i in range(len(batches))]
        starts = np.concatenate([i.a_start for i in instances])
        _, expected = unpacked.rows(np.arange(count))
        np.testing.assert_array_equal(np.sort(starts), np.sort(expected.a_start))  # each held-out example once
        assert sum(b["example_weights"].sum() for b in batches) == count
        assert sum(b["masked_lm_weights"].sum() for b in batches) == sum(
            b["masked_lm_weights"].sum() for b in unpacked.eval_batches(max_batches)
        )
        nonempty = [b["example_weights"].sum(axis=1) > 0 for b in batches]
        assert all(rows.all() for rows in nonempty[:-1])
        empty = ~nonempty[-1]  # the rows that pad the last batch hold nothing
        assert np.all(batches[-1]["attention_mask"][empty] == 0) and np.all(batches[-1]["masked_lm_weights"][empty] == 0)
        for process_count in (2, 4):
            local = [packed.eval_batches(max_batches, i, process_count) for i in range(process_count)]
            for b, batch in enumerate(batches):
                for key in batch:
                    np.testing.assert_array_equal(np.concatenate([x[b][key] for x in local]), batch[key], err_msg=key)
