"""Tests for PretrainingStream (bert_flax.data.pipeline): the batch contract, resume, eval batches."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from conftest import BATCH_KEYS

from bert_flax.config import DataConfig, MaskingConfig
from bert_flax.data.pipeline import STREAM_EVAL, DataPosition, PretrainingStream, layout, local_rows
from bert_flax.data.tokenizer import TokenIds

MAX_SEQ_LEN = 64


@pytest.fixture(scope="module")
def make_stream(corpus_data, corpus_path):
    tokenized, ids = corpus_data

    def make(
        nsp=True, seed=0, batch_size=32, pairing="segments", documents=None, masking=None, max_seq_len=MAX_SEQ_LEN
    ) -> PretrainingStream:
        data = DataConfig(path=str(corpus_path), max_seq_len=max_seq_len, pairing=pairing)
        if documents is None:
            documents = np.arange(tokenized.num_documents)
        return PretrainingStream(
            tokenized, ids, documents, data, masking or MaskingConfig(), nsp=nsp, seed=seed, batch_size=batch_size
        )

    return make


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


def spans(instances) -> set[tuple[int, int, int, int]]:
    return set(zip(*(getattr(instances, n).tolist() for n in ("a_start", "a_end", "b_start", "b_end"))))


def check_contract(batch, ids: TokenIds, batch_size: int, nsp: bool, masking: MaskingConfig) -> None:
    P = masking.num_predictions(MAX_SEQ_LEN)
    assert set(batch) == BATCH_KEYS
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert batch[key].shape == (batch_size, MAX_SEQ_LEN) and batch[key].dtype == np.int32, key
    for key, dtype in (("masked_lm_positions", np.int32), ("masked_lm_ids", np.int32), ("masked_lm_weights", np.float32)):
        assert batch[key].shape == (batch_size, P) and batch[key].dtype == dtype, key
    labels = batch["next_sentence_labels"]
    assert labels.shape == (batch_size,) and labels.dtype == np.int32
    assert set(np.unique(labels).tolist()) <= {0, 1}

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
        assert after.step == position.step + 1
        check_contract(batch, ids, 128, nsp, masking)
        np.testing.assert_array_equal(batch["next_sentence_labels"], instances.next_sentence_labels)
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


def test_determinism(make_stream):
    first = [b for b, _ in itertools.islice(make_stream(seed=5).iterate(), 3)]
    second = [b for b, _ in itertools.islice(make_stream(seed=5).iterate(), 3)]
    other = [b for b, _ in itertools.islice(make_stream(seed=6).iterate(), 3)]
    for a, b in zip(first, second):
        assert_batches_equal(a, b)
    for a, c in zip(first, other):
        assert not np.array_equal(a["input_ids"], c["input_ids"])
    # A stream's batch at a position does not depend on what it produced before.
    stream = make_stream(seed=5)
    for _ in stream.epoch_instances(3), stream.batch_at(DataPosition(step=9, epoch=2, offset=5)):
        pass
    assert_batches_equal(stream.batch_at(DataPosition())[0], first[0])


@pytest.mark.parametrize("nsp", [True, False])
def test_resume_is_bit_exact_across_epochs(make_stream, nsp):
    batch_size, total = 256, 7
    uninterrupted = list(itertools.islice(make_stream(nsp=nsp, batch_size=batch_size).iterate(DataPosition()), total))
    positions = [position for _, position in uninterrupted]
    assert [p.step for p in positions] == list(range(1, total + 1))
    # Epochs are crossed after the resume point (and batches span epoch ends).
    assert positions[2].epoch < positions[-1].epoch
    assert any(p.offset != 0 for p in positions)
    for split in range(1, total):
        saved = positions[split - 1]
        resumed = list(itertools.islice(make_stream(nsp=nsp, batch_size=batch_size).iterate(saved), total - split))
        for (a, position_a), (b, position_b) in zip(uninterrupted[split:], resumed):
            assert position_a == position_b
            assert_batches_equal(a, b)


@pytest.mark.parametrize("nsp", [True, False])
def test_batches_read_the_epochs_in_order(make_stream, nsp):
    """Consecutive batches take consecutive instances: each epoch's instances exactly once, in order."""
    batch_size, total = 256, 7
    stream = make_stream(nsp=nsp, batch_size=batch_size)
    position, taken, positions = DataPosition(), [], []
    for _ in range(total):
        _, instances, position = stream.batch_at(position)
        assert len(instances) == batch_size
        taken.append(instances)
        positions.append(position)
    epoch_sizes = []
    while sum(epoch_sizes) < total * batch_size:
        epoch_sizes.append(len(stream.epoch_instances(len(epoch_sizes))))
    assert len(epoch_sizes) >= 2
    for name in ("a_start", "a_end", "b_start", "b_end", "next_sentence_labels"):
        expected = np.concatenate([getattr(stream.epoch_instances(e), name) for e in range(len(epoch_sizes))])
        got = np.concatenate([getattr(i, name) for i in taken])
        np.testing.assert_array_equal(got, expected[: total * batch_size], err_msg=name)
    # Every position is (epoch, offset) of the number of instances consumed so far.
    ends = np.cumsum(epoch_sizes)
    for step, position in enumerate(positions, start=1):
        consumed = step * batch_size
        epoch = int(np.searchsorted(ends, consumed, side="right"))
        assert position == DataPosition(step=step, epoch=epoch, offset=consumed - int(np.append(0, ends)[epoch]))


def test_pairs_are_redrawn_every_epoch(make_stream):
    stream = make_stream()
    epoch0, epoch1 = stream.epoch_instances(0), stream.epoch_instances(1)
    assert len(spans(epoch0) ^ spans(epoch1)) > len(epoch0) // 4
    assert not np.array_equal(epoch0.next_sentence_labels, epoch1.next_sentence_labels[: len(epoch0)])
    # Going back to an epoch gives the same draw, in the same (shuffled) order.
    again = stream.epoch_instances(0)
    np.testing.assert_array_equal(again.a_start, epoch0.a_start)
    np.testing.assert_array_equal(again.b_start, epoch0.b_start)
    assert not np.all(np.diff(epoch0.a_start) > 0)  # shuffled
    # The stream reads the epochs in order: the first batch is the start of epoch 0.
    _, instances, _ = stream.batch_at(DataPosition())
    np.testing.assert_array_equal(instances.a_start, epoch0.a_start[: stream.batch_size])


def test_local_rows_concatenate_to_global_batch(make_stream):
    stream = make_stream(batch_size=64)
    global_batches = list(itertools.islice(stream.iterate(), 3))
    local = [list(itertools.islice(stream.iterate(process_index=i, process_count=4), 3)) for i in range(4)]
    for step, (batch, position) in enumerate(global_batches):
        assert all(local[i][step][1] == position for i in range(4))
        for key in batch:
            assert local[0][step][0][key].shape[0] == 16
            np.testing.assert_array_equal(np.concatenate([local[i][step][0][key] for i in range(4)]), batch[key])
    # local_rows on its own.
    batch = global_batches[0][0]
    assert_batches_equal(local_rows(batch, 0, 1), batch)
    np.testing.assert_array_equal(local_rows(batch, 3, 4)["input_ids"], batch["input_ids"][48:])


@pytest.mark.parametrize("nsp", [True, False])
def test_eval_batches(corpus_data, make_stream, nsp):
    tokenized, ids = corpus_data
    held_out = np.sort(np.random.default_rng(0).choice(tokenized.num_documents, tokenized.num_documents // 5, replace=False))
    stream = make_stream(nsp=nsp, documents=held_out, seed=3)
    instances = stream.draw_instances(np.random.default_rng([stream.seed, STREAM_EVAL]))
    batch_size = next(b for b in (64, 60, 56) if len(instances) % b)  # so the last batch has padding
    stream = make_stream(nsp=nsp, documents=held_out, seed=3, batch_size=batch_size)
    batches = stream.eval_batches()
    assert len(batches) == math.ceil(len(instances) / batch_size)
    # Fixed across calls and across streams.
    for a, b, c in zip(batches, stream.eval_batches(), make_stream(nsp=nsp, documents=held_out, seed=3,
                                                                     batch_size=batch_size).eval_batches()):
        assert_batches_equal(a, b)
        assert_batches_equal(a, c)
    weights = np.concatenate([b["example_weights"] for b in batches])
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, (np.arange(len(weights)) < len(instances)).astype(np.float32))
    assert weights.sum() == len(instances)
    for batch in batches:
        real = batch["example_weights"] > 0
        contract = {k: v for k, v in batch.items() if k != "example_weights"}
        check_contract({k: v[real] for k, v in contract.items()}, ids, int(real.sum()), nsp, MaskingConfig())
        assert batch["input_ids"].shape == (batch_size, MAX_SEQ_LEN)
        assert np.all(batch["masked_lm_weights"][~real] == 0)
    # The real rows are exactly the eval instances, each once, in order, all from held-out documents.
    restored = np.concatenate([unmask(b)[b["example_weights"] > 0] for b in batches])
    np.testing.assert_array_equal(restored, layout(instances, tokenized.token_ids, MAX_SEQ_LEN, ids)["input_ids"])
    labels = np.concatenate([b["next_sentence_labels"][b["example_weights"] > 0] for b in batches])
    np.testing.assert_array_equal(labels, instances.next_sentence_labels)
    doc_token_starts = tokenized.sentence_starts[tokenized.document_starts]
    starts = np.concatenate([instances.a_start, instances.b_start if nsp else np.zeros(0, np.int64)])
    docs = np.searchsorted(doc_token_starts, starts, side="right") - 1
    assert np.isin(docs, held_out).all()
