"""Tests for NSP pairing (bert_flax.data.pairing) on the tokenized corpus."""

from __future__ import annotations

import numpy as np
import pytest

from bert_flax.data.pairing import (
    IS_NEXT,
    NOT_NEXT,
    Instances,
    segment_bounds,
    segment_pairs,
    sentence_pairs,
    single_segments,
    truncate_pairs,
)
from bert_flax.data.tokenized import TokenizedCorpus

MAX_TOKENS = (61, 125)  # max_seq_len 64 and 128 with NSP


@pytest.fixture(scope="module")
def tokenized(corpus_data) -> TokenizedCorpus:
    return corpus_data[0]


@pytest.fixture(scope="module")
def word_start(corpus_data) -> np.ndarray:
    tokenized, ids = corpus_data
    return ~ids.is_continuation_V[tokenized.token_ids]


def document_token_starts(tokenized: TokenizedCorpus) -> np.ndarray:
    """int64 [D + 1]: token offset of every document, cross-checked with document_token_span."""
    starts = tokenized.sentence_starts[tokenized.document_starts]
    for d in range(tokenized.num_documents):
        assert tokenized.document_token_span(d) == (starts[d], starts[d + 1])
    return starts


def document_of(tokenized: TokenizedCorpus, tokens: np.ndarray) -> np.ndarray:
    """Document index of each token offset."""
    return np.searchsorted(tokenized.sentence_starts[tokenized.document_starts], tokens, side="right") - 1


def span_documents(tokenized: TokenizedCorpus, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Document of each non-empty span [start, end); asserts the span lies inside one document."""
    assert np.all(end > start)
    first, last = document_of(tokenized, start), document_of(tokenized, end - 1)
    np.testing.assert_array_equal(first, last)
    return first


def draw(mode: str, tokenized, word_start, max_tokens, rng, documents=None, short_seq_prob=0.1) -> Instances:
    bounds, document_segments = segment_bounds(tokenized, max_tokens)
    if documents is None:
        documents = np.arange(tokenized.num_documents)
    args = (bounds, document_segments, np.asarray(documents, dtype=np.int64), max_tokens)
    if mode == "segments":
        return segment_pairs(*args, short_seq_prob, word_start, rng)
    if mode == "sentences":
        return sentence_pairs(*args, rng)
    return single_segments(*args, rng)


def check_instances(tokenized: TokenizedCorpus, instances: Instances, max_tokens: int, nsp: bool) -> None:
    """Lengths and NSP label rules of every instance."""
    for name in ("a_start", "a_end", "b_start", "b_end"):
        assert getattr(instances, name).dtype == np.int64
    assert instances.next_sentence_labels.dtype == np.int32
    assert len(instances) > 0
    len_a = instances.a_end - instances.a_start
    len_b = instances.b_end - instances.b_start
    assert np.all(len_a >= 1)
    assert np.all(len_a + len_b <= max_tokens)
    assert np.all((instances.a_start >= 0) & (instances.b_end <= len(tokenized.token_ids)))
    doc_a = span_documents(tokenized, instances.a_start, instances.a_end)
    labels = instances.next_sentence_labels
    if not nsp:
        assert np.all(len_b == 0) and np.all(labels == 0)
        return
    assert set(np.unique(labels).tolist()) <= {IS_NEXT, NOT_NEXT}
    assert np.all(len_b >= 1)
    doc_b = span_documents(tokenized, instances.b_start, instances.b_end)
    is_next = labels == IS_NEXT
    # NotNext: B always from another document.
    assert np.all(doc_a[~is_next] != doc_b[~is_next])
    # IsNext: same document, B after A; exactly adjacent unless truncation trimmed the pair
    # (truncation leaves exactly max_tokens tokens, so a shorter pair was never trimmed).
    assert np.all(doc_a[is_next] == doc_b[is_next])
    assert np.all(instances.b_start[is_next] >= instances.a_end[is_next])
    untrimmed = is_next & (len_a + len_b < max_tokens)
    np.testing.assert_array_equal(instances.b_start[untrimmed], instances.a_end[untrimmed])


# --- segment_bounds ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [5, *MAX_TOKENS, 10_000])
def test_segment_bounds(tokenized, max_tokens):
    bounds, document_segments = segment_bounds(tokenized, max_tokens)
    assert bounds.dtype == np.int64 and document_segments.dtype == np.int64
    # Contiguous, non-empty, at most max_tokens, covering the whole token array.
    assert bounds[0] == 0 and bounds[-1] == len(tokenized.token_ids)
    lengths = np.diff(bounds)
    assert np.all(lengths >= 1) and np.all(lengths <= max_tokens)
    # Sentences are only cut when too long, into ceil(len / max_tokens) pieces.
    starts = tokenized.sentence_starts
    assert np.isin(starts, bounds).all()
    pieces = np.diff(np.searchsorted(bounds, starts))
    np.testing.assert_array_equal(pieces, -(-np.diff(starts) // max_tokens))
    # Document offsets: D + 1 of them, pointing at the documents' first tokens.
    assert len(document_segments) == tokenized.num_documents + 1
    assert document_segments[0] == 0 and document_segments[-1] == len(bounds) - 1
    assert np.all(np.diff(document_segments) >= 0)
    np.testing.assert_array_equal(bounds[document_segments], document_token_starts(tokenized))
    if max_tokens == 10_000:
        np.testing.assert_array_equal(bounds, starts)


# --- pairing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["segments", "sentences"])
@pytest.mark.parametrize("max_tokens", MAX_TOKENS)
def test_pairs_are_valid(tokenized, word_start, mode, max_tokens):
    for seed in range(3):
        instances = draw(mode, tokenized, word_start, max_tokens, np.random.default_rng(seed))
        check_instances(tokenized, instances, max_tokens, nsp=True)
        # The exact-adjacency check of untrimmed IsNext pairs is not vacuous.
        is_next = instances.next_sentence_labels == IS_NEXT
        len_ab = instances.a_end - instances.a_start + instances.b_end - instances.b_start
        assert (is_next & (len_ab < max_tokens)).sum() > 0.3 * is_next.sum()
        # A spans never overlap.
        order = np.argsort(instances.a_start)
        assert np.all(instances.a_end[order][:-1] <= instances.a_start[order][1:])
        if mode == "sentences":  # there every IsNext B is also the A of another instance
            continue
        # Segments: a token is in at most one A or IsNext B, and most of the corpus is used in an
        # epoch (NotNext puts its unused segments back).
        used = np.zeros(len(tokenized.token_ids), dtype=np.int32)
        for s, e in zip(instances.a_start, instances.a_end):
            used[s:e] += 1
        for s, e, label in zip(instances.b_start, instances.b_end, instances.next_sentence_labels):
            if label == IS_NEXT:
                used[s:e] += 1
        assert used.max() == 1
        assert used.mean() > 0.8, used.mean()


@pytest.mark.parametrize("mode", ["segments", "sentences"])
def test_is_next_exactly_adjacent_without_truncation(tokenized, word_start, mode):
    """With max_tokens beyond any pair's length, every IsNext B starts exactly where A ends."""
    max_tokens = len(tokenized.token_ids)
    instances = draw(mode, tokenized, word_start, max_tokens, np.random.default_rng(0))
    check_instances(tokenized, instances, max_tokens, nsp=True)
    is_next = instances.next_sentence_labels == IS_NEXT
    assert is_next.sum() > 10
    np.testing.assert_array_equal(instances.b_start[is_next], instances.a_end[is_next])


@pytest.mark.parametrize("mode", ["segments", "sentences"])
def test_is_next_fraction_is_balanced(tokenized, word_start, mode):
    labels = []
    seed = 0
    while seed < 30 or sum(map(len, labels)) < 20_000:
        instances = draw(mode, tokenized, word_start, MAX_TOKENS[0], np.random.default_rng([seed, 17]))
        labels.append(instances.next_sentence_labels)
        seed += 1
    fraction = np.mean(np.concatenate(labels) == IS_NEXT)
    assert abs(fraction - 0.5) < 0.02, fraction
    # And every single draw is balanced too: within 5 binomial standard deviations of 0.5.
    z = [(np.mean(x == IS_NEXT) - 0.5) / (0.5 / np.sqrt(len(x))) for x in labels]
    assert max(map(abs, z)) < 5, z


def test_pairs_are_redrawn_per_seed(tokenized, word_start):
    for mode in ("segments", "sentences"):
        a = draw(mode, tokenized, word_start, MAX_TOKENS[0], np.random.default_rng(0))
        b = draw(mode, tokenized, word_start, MAX_TOKENS[0], np.random.default_rng(0))
        c = draw(mode, tokenized, word_start, MAX_TOKENS[0], np.random.default_rng(1))
        for name in ("a_start", "a_end", "b_start", "b_end", "next_sentence_labels"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        spans_a = set(zip(a.a_start.tolist(), a.a_end.tolist(), a.b_start.tolist(), a.b_end.tolist()))
        spans_c = set(zip(c.a_start.tolist(), c.a_end.tolist(), c.b_start.tolist(), c.b_end.tolist()))
        assert len(spans_a ^ spans_c) > len(a) // 4


@pytest.mark.parametrize("mode", ["segments", "sentences", "single"])
def test_spans_only_from_given_documents(tokenized, word_start, mode):
    num_documents = tokenized.num_documents
    held_out = np.sort(np.random.default_rng(3).choice(num_documents, size=max(2, num_documents // 5), replace=False))
    two = held_out[tokenized.sentence_counts()[held_out] >= 2][:2]  # two that can make sentence pairs
    assert len(two) == 2
    for documents in (held_out, held_out[::-1], two):
        for seed in range(3):
            instances = draw(mode, tokenized, word_start, MAX_TOKENS[0], np.random.default_rng(seed), documents)
            check_instances(tokenized, instances, MAX_TOKENS[0], nsp=mode != "single")
            assert np.isin(span_documents(tokenized, instances.a_start, instances.a_end), documents).all()
            if mode != "single":
                assert np.isin(span_documents(tokenized, instances.b_start, instances.b_end), documents).all()
    # All documents of the held-out set get used, as A, over one draw.
    instances = draw(mode, tokenized, word_start, MAX_TOKENS[0], np.random.default_rng(0), held_out)
    used = set(span_documents(tokenized, instances.a_start, instances.a_end).tolist())
    if mode == "sentences":  # only documents with two segments (sentences or pieces) can hold an A
        segments_per_document = np.diff(segment_bounds(tokenized, MAX_TOKENS[0])[1])
        expected = {d for d in held_out.tolist() if segments_per_document[d] >= 2}
    else:
        expected = set(held_out.tolist())
    assert used == expected


@pytest.mark.parametrize("max_tokens", MAX_TOKENS)
def test_single_segments_tile_the_documents(tokenized, word_start, max_tokens):
    instances = draw("single", tokenized, word_start, max_tokens, np.random.default_rng(0))
    check_instances(tokenized, instances, max_tokens, nsp=False)
    # Consecutive, in order, covering every token exactly once, never across documents.
    np.testing.assert_array_equal(instances.a_start[1:], instances.a_end[:-1])
    assert instances.a_start[0] == 0 and instances.a_end[-1] == len(tokenized.token_ids)
    assert np.isin(document_token_starts(tokenized), np.append(instances.a_start, instances.a_end[-1])).all()
    # Greedy: adding the next segment of the same document would not have fit.
    bounds, _ = segment_bounds(tokenized, max_tokens)
    next_end = bounds[np.minimum(np.searchsorted(bounds, instances.a_end) + 1, len(bounds) - 1)]
    same_doc = document_of(tokenized, instances.a_end[:-1]) == document_of(tokenized, instances.a_start[:-1])
    assert np.all(next_end[:-1][same_doc] - instances.a_start[:-1][same_doc] > max_tokens)


def test_short_seq_prob_shortens(tokenized, word_start):
    def mean_length(short_seq_prob):
        lengths = []
        for seed in range(5):
            instances = draw("segments", tokenized, word_start, MAX_TOKENS[1], np.random.default_rng(seed),
                             short_seq_prob=short_seq_prob)
            check_instances(tokenized, instances, MAX_TOKENS[1], nsp=True)
            lengths.append(instances.a_end - instances.a_start + instances.b_end - instances.b_start)
        return np.concatenate(lengths).mean()

    long, short = mean_length(0.0), mean_length(1.0)
    assert short < 0.9 * long, (short, long)


# --- truncate_pairs -----------------------------------------------------------------------------


def reference_truncation(len_a: int, len_b: int, max_tokens: int) -> tuple[int, int]:
    """Google's truncate_seq_pair, token by token: trim the longer side, B on ties."""
    while len_a + len_b > max_tokens:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


def spans(pairs, base=1000):
    """Instances with A at [base, base + la) and B at [base + 500, base + 500 + lb)."""
    la, lb = np.array(pairs).T
    return Instances.from_lists(base + 0 * la, base + la, base + 500 + 0 * lb, base + 500 + lb, np.zeros(len(la)))


@pytest.mark.parametrize(
    ("len_a", "len_b", "max_tokens", "expected"),
    [
        (100, 40, 120, (80, 40)),  # only A is longer: A loses all 20
        (40, 100, 120, (40, 80)),
        (70, 70, 120, (60, 60)),  # tie: B then A alternately
        (71, 70, 120, (60, 60)),  # A loses 1, then 10 each
        (70, 71, 120, (60, 60)),
        (70, 70, 119, (60, 59)),  # odd excess on a tie: B loses the extra one
        (60, 50, 120, (60, 50)),  # fits: unchanged
        (125, 0, 120, (120, 0)),  # no B
        (3, 200, 10, (3, 7)),
    ],
)
def test_truncate_pairs_exact_lengths(len_a, len_b, max_tokens, expected):
    assert reference_truncation(len_a, len_b, max_tokens) == expected
    out = truncate_pairs(spans([(len_a, len_b)]), max_tokens, np.random.default_rng(0))
    assert (int(out.a_end[0] - out.a_start[0]), int(out.b_end[0] - out.b_start[0])) == expected


def test_truncate_pairs_matches_reference_and_trims_only_ends():
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 200, size=(5000, 2))
    pairs[:, 0] = np.maximum(pairs[:, 0], 1)
    before = spans(pairs)
    labels = rng.integers(0, 2, size=len(pairs)).astype(np.int32)
    before = Instances(before.a_start, before.a_end, before.b_start, before.b_end, labels)
    max_tokens = 125
    after = truncate_pairs(before, max_tokens, np.random.default_rng(1))
    expected = np.array([reference_truncation(int(a), int(b), max_tokens) for a, b in pairs])
    np.testing.assert_array_equal(after.a_end - after.a_start, expected[:, 0])
    np.testing.assert_array_equal(after.b_end - after.b_start, expected[:, 1])
    np.testing.assert_array_equal(after.next_sentence_labels, labels)
    # Sub-spans of the originals.
    assert np.all((after.a_start >= before.a_start) & (after.a_end <= before.a_end))
    assert np.all((after.b_start >= before.b_start) & (after.b_end <= before.b_end))
    # Both ends get trimmed (about evenly), not always the same one.
    front = (after.a_start - before.a_start).sum() + (after.b_start - before.b_start).sum()
    total = (before.a_end - before.a_start + before.b_end - before.b_start).sum() - expected.sum()
    assert total > 10_000
    assert abs(front / total - 0.5) < 0.02
    # Deterministic in the rng.
    again = truncate_pairs(before, max_tokens, np.random.default_rng(1))
    np.testing.assert_array_equal(again.a_start, after.a_start)
    np.testing.assert_array_equal(again.b_start, after.b_start)
