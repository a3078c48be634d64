"""Tests for PretrainingStream (bert_flax.data.pipeline): the batch contract, epochs, resume, processes, eval."""

from __future__ import annotations

import dataclasses
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from conftest import BATCH_KEYS

from bert_flax.config import DataConfig, MaskingConfig
from bert_flax.data.pairing import anchor_units, chunk_spans, chunk_units, segment_rows, sentence_rows, single_rows
from bert_flax.data.pipeline import DataPosition, PretrainingStream, layout, local_rows, make_batch
from bert_flax.data.row_random import RowRandom, Stream, derive_key, permute
from bert_flax.data.token_corpus import ShardedTokens
from bert_flax.data.tokenizer import TokenIds
from bert_flax.errors import UserError

MAX_SEQ_LEN = 64


@pytest.fixture(scope="module")
def make_stream(corpus_data, corpus_path):
    tokenized, ids = corpus_data

    def make(
        nsp=True,
        seed=0,
        batch_size=32,
        pairing="segments",
        in_split_D=None,
        masking=None,
        max_seq_len=MAX_SEQ_LEN,
        mlm=True,
        stream=Stream.PAIRING,
    ) -> PretrainingStream:
        data = DataConfig(path=str(corpus_path), max_seq_len=max_seq_len, pairing=pairing)
        if in_split_D is None:
            in_split_D = np.ones(tokenized.num_documents, dtype=bool)
        return PretrainingStream(
            tokenized, ids, in_split_D, data, masking or MaskingConfig(), nsp=nsp, seed=seed, batch_size=batch_size,
            mlm=mlm, stream=stream,
        )

    return make


@pytest.fixture(scope="module")
def held_out(corpus_data) -> np.ndarray:
    """bool [D]: a random fifth of the documents (an eval split)."""
    return np.random.default_rng(0).random(corpus_data[0].num_documents) < 0.2


def units_of(stream: PretrainingStream, instances) -> np.ndarray:
    """The unit each instance was built from, read back from its A span alone.

    A lies inside its chunk (chunks tile the documents) or is its anchor sentence, so the span
    identifies the unit without re-deriving the stream's permutation.
    """
    tokenized = stream.tokenized
    if stream.sentence_pairs:
        sentence = np.searchsorted(tokenized.sentence_starts, instances.a_start, side="right") - 1
        np.testing.assert_array_less(instances.a_end - 1, tokenized.sentence_starts[sentence + 1])
        document = np.searchsorted(tokenized.document_starts, sentence, side="right") - 1
        return stream.units.unit_starts[document] + sentence - tokenized.document_starts[document]
    _, start_U, stop_U = chunk_spans(tokenized, stream.units, np.arange(stream.units.count), stream.max_tokens)
    unit = np.searchsorted(start_U, instances.a_start, side="right") - 1
    assert np.all((unit >= 0) & (instances.a_end <= stop_U[unit]))
    return unit


def crossing_step(stream: PretrainingStream) -> int:
    """The first step whose batch spans the end of epoch 0."""
    step = stream.units.count // stream.batch_size
    assert (step * stream.batch_size) // stream.units.count == 0
    assert ((step + 1) * stream.batch_size - 1) // stream.units.count == 1
    return step


def unmask(batch: dict[str, np.ndarray]) -> np.ndarray:
    """input_ids with masked_lm_ids put back at masked_lm_positions."""
    restored = batch["input_ids"].copy()
    rows, cols = np.nonzero(batch["masked_lm_weights"] > 0)
    restored[rows, batch["masked_lm_positions"][rows, cols]] = batch["masked_lm_ids"][rows, cols]
    return restored


def assert_batches_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def spans(instances) -> list[tuple[int, int, int, int, int]]:
    names = ("a_start", "a_end", "b_start", "b_end", "next_sentence_labels")
    return list(zip(*(getattr(instances, n).tolist() for n in names)))


def assert_instances_equal(a, b) -> None:
    for name in ("a_start", "a_end", "b_start", "b_end", "next_sentence_labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def check_contract(batch, ids: TokenIds, batch_size: int, nsp: bool, masking: MaskingConfig) -> None:
    P = masking.num_predictions(MAX_SEQ_LEN)
    assert set(batch) == BATCH_KEYS
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert batch[key].shape == (batch_size, MAX_SEQ_LEN) and batch[key].dtype == np.int32, key
    for key, dtype in (("masked_lm_positions", np.int32), ("masked_lm_ids", np.int32), ("masked_lm_weights", np.float32)):
        assert batch[key].shape == (batch_size, P) and batch[key].dtype == dtype, key
    for key, dtype in (("cls_positions", np.int32), ("next_sentence_labels", np.int32), ("example_weights", np.float32)):
        assert batch[key].shape == (batch_size, 1) and batch[key].dtype == dtype, key
    labels = batch["next_sentence_labels"][:, 0]
    assert set(np.unique(labels).tolist()) <= {0, 1}
    # One example per row: it starts at 0, is segment 1 and its positions count from its [CLS].
    assert np.all(batch["cls_positions"] == 0) and np.all(batch["example_weights"] == 1)
    np.testing.assert_array_equal(batch["segment_ids"], batch["attention_mask"])
    positions = np.arange(MAX_SEQ_LEN)[None, :] * batch["attention_mask"]
    np.testing.assert_array_equal(batch["position_ids"], positions)

    input_ids, restored = batch["input_ids"], unmask(batch)
    j = np.arange(MAX_SEQ_LEN)[None, :]
    assert np.all(input_ids[:, 0] == ids.cls)
    is_sep = restored == ids.sep
    np.testing.assert_array_equal(is_sep, input_ids == ids.sep)  # [SEP] is never masked
    np.testing.assert_array_equal(is_sep.sum(axis=1), 2 if nsp else 1)
    assert not np.any(input_ids[:, 1:] == ids.cls)
    first_sep = np.argmax(is_sep, axis=1)[:, None]
    last_sep = MAX_SEQ_LEN - 1 - np.argmax(is_sep[:, ::-1], axis=1)[:, None]
    assert np.all(first_sep >= 2)  # A is not empty
    np.testing.assert_array_equal(batch["attention_mask"], (j <= last_sep).astype(np.int32))
    np.testing.assert_array_equal(restored == ids.pad, j > last_sep)
    if nsp:
        assert np.all(last_sep > first_sep + 1)  # B is not empty
        np.testing.assert_array_equal(batch["token_type_ids"], ((j > first_sep) & (j <= last_sep)).astype(np.int32))
    else:
        assert np.all(batch["token_type_ids"] == 0) and np.all(labels == 0)

    # MLM targets: only text positions, count as configured.
    weights = batch["masked_lm_weights"]
    valid = weights > 0
    rows = np.broadcast_to(np.arange(batch_size)[:, None], valid.shape)
    positions = batch["masked_lm_positions"][valid]
    maskable = (batch["attention_mask"] == 1) & ~is_sep & (j > 0)
    assert np.all(maskable[rows[valid], positions])
    np.testing.assert_array_equal(batch["masked_lm_ids"][valid], restored[rows[valid], positions])
    assert np.all(batch["masked_lm_positions"][~valid] == 0) and np.all(batch["masked_lm_ids"][~valid] == 0)
    p = Fraction(str(masking.mask_prob))
    wanted = np.array([min(max(math.floor(p * int(m) + Fraction(1, 2)), 1), P) for m in maskable.sum(axis=1)])
    wanted = np.minimum(wanted, maskable.sum(axis=1))
    if masking.whole_word_mask:
        assert np.all(valid.sum(axis=1) <= wanted) and np.all(valid.sum(axis=1) >= 1)
    else:
        np.testing.assert_array_equal(valid.sum(axis=1), wanted)
    # Only the predicted positions differ from the text.
    changed = input_ids != restored
    assert changed.sum() <= valid.sum()
    assert np.all(changed[~maskable] == 0)


@pytest.mark.parametrize(
    ("nsp", "pairing", "whole_word_mask"),
    [(True, "segments", False), (True, "sentences", False), (False, "segments", False), (True, "segments", True)],
)
def test_batch_contract_and_unmasking(corpus_data, make_stream, nsp, pairing, whole_word_mask):
    tokenized, ids = corpus_data
    masking = MaskingConfig(whole_word_mask=whole_word_mask)
    stream = make_stream(nsp=nsp, pairing=pairing, batch_size=128, masking=masking)
    position = DataPosition()
    predicted = masked = 0
    for _ in range(3):
        batch, instances, after = stream.batch_at(position)
        assert after == stream.position(position.step + 1)
        check_contract(batch, ids, 128, nsp, masking)
        np.testing.assert_array_equal(batch["next_sentence_labels"][:, 0], instances.next_sentence_labels)
        # Unmasking reproduces the laid-out text of exactly these instances.
        laid = layout(instances, tokenized.token_ids, MAX_SEQ_LEN, ids)
        np.testing.assert_array_equal(unmask(batch), laid["input_ids"])
        np.testing.assert_array_equal(batch["token_type_ids"], laid["token_type_ids"])
        np.testing.assert_array_equal(batch["attention_mask"], laid["attention_mask"])
        # ... and that layout is [CLS] A [SEP] B [SEP] with the corpus tokens of the spans.
        for row in range(len(instances)):
            a = tokenized.token_ids[instances.a_start[row] : instances.a_end[row]]
            b = tokenized.token_ids[instances.b_start[row] : instances.b_end[row]]
            expected = [ids.cls, *a, ids.sep] + ([*b, ids.sep] if len(b) else [])
            np.testing.assert_array_equal(laid["input_ids"][row, : len(expected)], expected)
        valid = batch["masked_lm_weights"] > 0
        rows = np.nonzero(valid)[0]
        predicted += valid.sum()
        masked += (batch["input_ids"][rows, batch["masked_lm_positions"][valid]] == ids.mask).sum()
        position = after
    assert abs(masked / predicted - 0.8) < 0.05  # the masking config reaches the batches


def test_nsp_only_predicts_nothing(corpus_data, make_stream):
    tokenized, ids = corpus_data
    batch, instances, _ = make_stream(mlm=False).batch_at(DataPosition())
    assert np.all(batch["masked_lm_weights"] == 0)
    laid = layout(instances, tokenized.token_ids, MAX_SEQ_LEN, ids)
    np.testing.assert_array_equal(batch["input_ids"], laid["input_ids"])
    assert set(np.unique(batch["next_sentence_labels"]).tolist()) == {0, 1}


def test_whole_word_masking_takes_whole_words(corpus_data, make_stream):
    _, ids = corpus_data
    masking = MaskingConfig(whole_word_mask=True, mask_prob=0.3)
    batch, _, _ = make_stream(batch_size=256, masking=masking).batch_at(DataPosition(step=0))
    restored = unmask(batch)
    j = np.arange(MAX_SEQ_LEN)[None, :]
    text = (batch["attention_mask"] == 1) & (restored != ids.sep) & (j > 0)
    previous_text = np.pad(text[:, :-1], ((0, 0), (1, 0)))
    word_start = text & (~ids.is_continuation_V[restored] | ~previous_text)
    word = np.cumsum(word_start, axis=1)  # word number of every text position, per row
    predicted = np.zeros_like(text)
    rows, cols = np.nonzero(batch["masked_lm_weights"] > 0)
    predicted[rows, batch["masked_lm_positions"][rows, cols]] = True
    multi_piece = 0
    for row in range(len(text)):
        words = word[row][text[row]]
        hit = predicted[row][text[row]]
        taken = np.bincount(words, weights=hit)
        size = np.bincount(words)
        partial = np.flatnonzero((taken > 0) & (taken < size))
        multi_piece += int(((taken == size) & (size > 1)).sum())
        if len(partial):  # only when a single word is longer than the wanted count: its leading pieces
            assert len(partial) == 1 and taken.sum() == taken[partial[0]], row
            first = np.flatnonzero(words == partial[0])
            assert hit[first[: int(taken[partial[0]])]].all(), row
    assert multi_piece > 50  # words of several pieces are predicted whole


def test_determinism(make_stream):
    first = [b for b, _ in itertools.islice(make_stream(seed=5).iterate(), 3)]
    second = [b for b, _ in itertools.islice(make_stream(seed=5).iterate(), 3)]
    other = [b for b, _ in itertools.islice(make_stream(seed=6).iterate(), 3)]
    other_stream = [b for b, _ in itertools.islice(make_stream(seed=5, stream=Stream.EVAL).iterate(), 3)]
    for a, b in zip(first, second):
        assert_batches_equal(a, b)
    for a, c, d in zip(first, other, other_stream):
        assert not np.array_equal(a["input_ids"], c["input_ids"])
        assert not np.array_equal(a["input_ids"], d["input_ids"])
    # The seed and the stream key both change the pairs, not only the masking.
    rows = np.arange(200)
    pairs = spans(make_stream(seed=5).instances(rows))
    for changed in (make_stream(seed=6), make_stream(seed=5, stream=Stream.EVAL)):
        assert np.mean([x != y for x, y in zip(pairs, spans(changed.instances(rows)))]) > 0.5
    # A stream's batch at a position does not depend on what it produced before.
    stream = make_stream(seed=5)
    stream.batch_at(stream.position(90))
    stream.instances(np.arange(5000, 5100))
    assert_batches_equal(stream.batch_at(DataPosition())[0], first[0])
    assert_batches_equal(stream.batch_at(stream.position(2))[0], first[2])


@pytest.mark.parametrize("nsp", [True, False])
def test_resume_is_bit_exact_across_epochs(make_stream, nsp):
    batch_size, total = 256, 7
    stream = make_stream(nsp=nsp, batch_size=batch_size)
    uninterrupted = list(itertools.islice(stream.iterate(DataPosition()), total))
    positions = [position for _, position in uninterrupted]
    assert [p.step for p in positions] == list(range(1, total + 1))
    # Every position is (epoch, offset) of the number of examples consumed so far.
    for position in positions:
        epoch, offset = divmod(position.step * batch_size, stream.units.count)
        assert position == DataPosition(position.step, epoch, offset) == stream.position(position.step)
    # Epochs are crossed after the resume point (and batches span epoch ends).
    assert positions[2].epoch < positions[-1].epoch
    assert any(p.offset != 0 for p in positions)
    for step in range(total):
        batch, _, after = make_stream(nsp=nsp, batch_size=batch_size).batch_at(stream.position(step))
        assert after == positions[step]
        assert_batches_equal(batch, uninterrupted[step][0])
    for split in range(1, total):
        saved = positions[split - 1]
        resumed = list(itertools.islice(make_stream(nsp=nsp, batch_size=batch_size).iterate(saved), total - split))
        for (a, position_a), (b, position_b) in zip(uninterrupted[split:], resumed):
            assert position_a == position_b
            assert_batches_equal(a, b)


@pytest.mark.parametrize(("nsp", "pairing"), [(True, "segments"), (True, "sentences"), (False, "segments")])
def test_each_epoch_visits_every_unit_once(make_stream, held_out, nsp, pairing):
    """Rows [e × U, (e + 1) × U) are the U units in a per-epoch shuffled order; batches read rows in order."""
    stream = make_stream(nsp=nsp, pairing=pairing, in_split_D=~held_out, batch_size=100)
    count = stream.units.count
    assert stream.examples_per_epoch == count > 500
    orders = []
    for epoch in range(3):
        units = units_of(stream, stream.instances(epoch * count + np.arange(count)))
        np.testing.assert_array_equal(np.sort(units), np.arange(count))
        assert np.mean(units == np.arange(count)) < 0.01  # shuffled
        orders.append(units)
    assert np.mean(orders[0] == orders[1]) < 0.01 and np.mean(orders[1] == orders[2]) < 0.01
    # Batches take consecutive rows: the first batches cover epoch 0, then epoch 1 follows.
    steps = -(-count // stream.batch_size) + 1
    taken = [stream.batch_at(stream.position(step))[1] for step in range(steps)]
    got = np.concatenate([units_of(stream, instances) for instances in taken])
    np.testing.assert_array_equal(got, np.concatenate(orders)[: steps * stream.batch_size])
    for name in ("a_start", "b_start", "next_sentence_labels"):
        expected = getattr(stream.instances(np.arange(steps * stream.batch_size)), name)
        np.testing.assert_array_equal(np.concatenate([getattr(i, name) for i in taken]), expected, err_msg=name)


@pytest.mark.parametrize(("nsp", "pairing"), [(True, "segments"), (True, "sentences"), (False, "segments")])
def test_rows_follow_the_documented_derivation(corpus_data, make_stream, held_out, nsp, pairing):
    """Row g: unit permute(g mod U, U, derive_key(seed, stream, g // U)), pairing draws keyed by
    (derive_key(seed, stream), g), masking by (derive_key(seed, Stream.MASKING, stream), g)."""
    tokenized, ids = corpus_data
    seed, stream_key = 11, Stream.EVAL
    stream = make_stream(nsp=nsp, pairing=pairing, in_split_D=~held_out, seed=seed, stream=stream_key)
    count = stream.units.count
    rows = np.concatenate([np.arange(0, 40), count - 20 + np.arange(40), 5 * count + np.arange(3)])
    epoch, index = rows // count, rows % count
    keys = [derive_key(seed, stream_key, int(e)) for e in np.unique(epoch)]
    units = np.concatenate([permute(index[epoch == e], count, key) for e, key in zip(np.unique(epoch), keys)])
    rng = RowRandom(derive_key(seed, stream_key), rows)
    max_tokens = MAX_SEQ_LEN - (3 if nsp else 2)
    chunks = chunk_units(tokenized, ~held_out, max_tokens)
    if not nsp:
        expected = single_rows(tokenized, chunks, units, max_tokens, rng)
    elif pairing == "sentences":
        expected = sentence_rows(tokenized, anchor_units(tokenized, ~held_out), chunks, units, max_tokens, rng)
    else:
        expected = segment_rows(tokenized, chunks, units, max_tokens, 0.1, ids.is_continuation_V, rng)
    batch, instances = stream.rows(rows)
    assert_instances_equal(instances, expected)
    masking_rng = RowRandom(derive_key(seed, Stream.MASKING, stream_key), rows)
    expected_batch = make_batch(expected, tokenized.token_ids, ids, stream.data, stream.masking, masking_rng)
    assert_batches_equal(batch, expected_batch)


@pytest.mark.parametrize("pairing", ["segments", "sentences"])
def test_pairs_are_redrawn_every_epoch(make_stream, pairing):
    stream = make_stream(pairing=pairing)
    count = stream.units.count
    epochs = []
    for epoch in range(2):
        instances = stream.instances(epoch * count + np.arange(count))
        epochs.append(instances.take(np.argsort(units_of(stream, instances))))  # by unit
    differ = np.mean([a != b for a, b in zip(spans(epochs[0]), spans(epochs[1]))])
    assert differ > 0.4, differ
    label_changes = np.mean(epochs[0].next_sentence_labels != epochs[1].next_sentence_labels)
    assert 0.4 < label_changes < 0.6, label_changes
    # Going back to an epoch gives the same draw, in the same order.
    assert_instances_equal(stream.instances(np.arange(count)), make_stream(pairing=pairing).instances(np.arange(count)))


@pytest.mark.parametrize(("nsp", "pairing"), [(True, "segments"), (True, "sentences"), (False, "segments")])
def test_local_rows_concatenate_to_global_batch(make_stream, nsp, pairing):
    stream = make_stream(nsp=nsp, pairing=pairing, batch_size=64)
    for step in (0, crossing_step(stream)):
        position = stream.position(step)
        batch, instances, after = stream.batch_at(position)
        for count in (1, 2, 4, 8):
            local = [stream.batch_at(position, index, count) for index in range(count)]
            assert all(after_i == after for _, _, after_i in local)
            for key in batch:
                assert local[0][0][key].shape[0] == 64 // count
                np.testing.assert_array_equal(np.concatenate([b[key] for b, _, _ in local]), batch[key], err_msg=key)
            assert_instances_equal(
                type(instances)(*(np.concatenate([getattr(i, f) for _, i, _ in local]) for f in
                                  ("a_start", "a_end", "b_start", "b_end", "next_sentence_labels"))),
                instances,
            )
            np.testing.assert_array_equal(
                np.concatenate([stream.local_row_indices(step, i, count) for i in range(count)]),
                step * 64 + np.arange(64),
            )
    # iterate() per process, over the epoch boundary.
    start = stream.position(crossing_step(stream) - 1)
    global_batches = list(itertools.islice(stream.iterate(start), 3))
    local = [list(itertools.islice(stream.iterate(start, i, 4), 3)) for i in range(4)]
    for step, (batch, position) in enumerate(global_batches):
        assert all(local[i][step][1] == position for i in range(4))
        assert_batches_equal({k: np.concatenate([local[i][step][0][k] for i in range(4)]) for k in batch}, batch)
    with pytest.raises(ValueError):
        stream.local_row_indices(0, 0, 3)
    # local_rows on its own.
    batch = global_batches[0][0]
    assert_batches_equal(local_rows(batch, 0, 1), batch)
    np.testing.assert_array_equal(local_rows(batch, 3, 4)["input_ids"], batch["input_ids"][48:])
    with pytest.raises(ValueError):
        local_rows(batch, 0, 3)


@pytest.mark.parametrize("nsp", [True, False])
def test_eval_batches(corpus_data, make_stream, held_out, nsp):
    tokenized, ids = corpus_data

    def make(batch_size=64):
        return make_stream(nsp=nsp, in_split_D=held_out, seed=3, batch_size=batch_size, stream=Stream.EVAL)

    count = make().units.count
    batch_size = next(b for b in (64, 60, 56) if count % b)  # so the last batch has padding
    stream = make(batch_size)
    assert stream.num_eval_rows(0) == count
    batches = stream.eval_batches(0)
    assert len(batches) == math.ceil(count / batch_size) >= 3
    # Fixed across calls and across streams.
    for a, b, c in zip(batches, stream.eval_batches(0), make(batch_size).eval_batches(0), strict=True):
        assert_batches_equal(a, b)
        assert_batches_equal(a, c)
    weights = np.concatenate([b["example_weights"] for b in batches])[:, 0]
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, (np.arange(len(weights)) < count).astype(np.float32))
    for batch in batches:
        real = batch["example_weights"][:, 0] > 0
        check_contract({k: v[real] for k, v in batch.items()}, ids, int(real.sum()), nsp, MaskingConfig())
        assert batch["input_ids"].shape == (batch_size, MAX_SEQ_LEN)
        assert np.all(batch["masked_lm_weights"][~real] == 0)
    assert not batches[-1]["example_weights"].all()
    assert np.all(batches[-1]["example_weights"][~real] == 0)
    # The real rows are epoch 0's rows: every unit once, all from held-out documents.
    full, instances = stream.rows(np.arange(count))
    for key in full:
        np.testing.assert_array_equal(
            np.concatenate([b[key] for b in batches])[:count], full[key], err_msg=key
        )
    np.testing.assert_array_equal(np.sort(units_of(stream, instances)), np.arange(count))
    starts = np.concatenate([instances.a_start, instances.b_start if nsp else np.zeros(0, np.int64)])
    docs = np.searchsorted(tokenized.document_token_starts(), starts, side="right") - 1
    assert held_out[docs].all()
    # max_batches bounds them: the first batches, all real.
    bounded = stream.eval_batches(2)
    assert stream.num_eval_rows(2) == 2 * batch_size
    assert len(bounded) == 2 and all(b["example_weights"].all() for b in bounded)
    for a, b in zip(bounded, batches):
        assert_batches_equal(a, b)
    assert stream.num_eval_rows(10_000) == count and len(stream.eval_batches(10_000)) == len(batches)
    # Per-process eval rows concatenate to the global ones (the padded last batch too).
    for process_count in (2, 4):
        local = [stream.eval_batches(0, i, process_count) for i in range(process_count)]
        assert all(len(x) == len(batches) for x in local)
        for b, batch in enumerate(batches):
            assert_batches_equal({k: np.concatenate([x[b][k] for x in local]) for k in batch}, batch)
    batch, instances = stream.eval_batch(len(batches) - 1, 0, process_count - 1, process_count)
    assert len(instances) == batch_size // process_count


def test_no_units_is_a_user_error(corpus_data, make_stream):
    with pytest.raises(UserError):
        make_stream(in_split_D=np.zeros(corpus_data[0].num_documents, dtype=bool))
    with pytest.raises(UserError):  # sentence pairs need a document with two sentences
        make_stream(pairing="sentences", in_split_D=corpus_data[0].sentence_counts() == 1)


def test_token_shards_do_not_change_the_batches(corpus_data, make_stream, corpus_path):
    """A token array split over several files (ShardedTokens) gives the same batches as one array."""
    tokenized, ids = corpus_data
    tokens = np.asarray(tokenized.token_ids[:])
    cuts = [0, 1, 4999, 5000, 20_011, len(tokens) - 1, len(tokens)]
    sharded = dataclasses.replace(
        tokenized, token_ids=ShardedTokens([tokens[a:b] for a, b in zip(cuts[:-1], cuts[1:])])
    )
    assert len(sharded.token_ids.shards) == 6 and len(sharded.token_ids) == len(tokens)
    for pairing, nsp in (("segments", True), ("sentences", True), ("segments", False)):
        data = DataConfig(path=str(corpus_path), max_seq_len=MAX_SEQ_LEN, pairing=pairing)
        masking = MaskingConfig(whole_word_mask=True)
        split = np.ones(tokenized.num_documents, dtype=bool)
        stream = PretrainingStream(sharded, ids, split, data, masking, nsp=nsp, seed=0, batch_size=256)
        reference = make_stream(nsp=nsp, pairing=pairing, masking=masking, batch_size=256)
        for step in (0, 3, 9):
            assert_batches_equal(stream.batch_at(stream.position(step))[0], reference.batch_at(stream.position(step))[0])
