"""Tests for NSP pairing, row by row (bert_flax.data.pairing), on the prepared corpus."""

from __future__ import annotations

import numpy as np
import pytest

from bert_flax.data.pairing import (
    IS_NEXT,
    NOT_NEXT,
    Instances,
    Units,
    anchor_units,
    chunk_spans,
    chunk_units,
    segment_rows,
    sentence_rows,
    single_rows,
    truncate_pairs,
)
from bert_flax.data.row_random import RowRandom, derive_key
from bert_flax.data.token_corpus import TokenizedCorpus

MAX_TOKENS = (61, 125)  # max_seq_len 64 and 128 with NSP
MODES = ("segments", "sentences", "single")


@pytest.fixture(scope="module")
def tokenized(corpus_data) -> TokenizedCorpus:
    return corpus_data[0]


@pytest.fixture(scope="module")
def is_continuation(corpus_data) -> np.ndarray:
    return corpus_data[1].is_continuation_V


@pytest.fixture(scope="module")
def everything(tokenized) -> np.ndarray:
    return np.ones(tokenized.num_documents, dtype=bool)


@pytest.fixture(scope="module")
def half(tokenized) -> np.ndarray:
    """bool [D]: a random half of the documents (a split)."""
    return np.random.default_rng(3).random(tokenized.num_documents) < 0.5


def doc_token_starts(tokenized: TokenizedCorpus) -> np.ndarray:
    """int64 [D + 1]: token offset of every document, cross-checked with document_token_span."""
    starts = np.asarray(tokenized.document_token_starts())
    np.testing.assert_array_equal(starts, tokenized.sentence_starts[tokenized.document_starts])
    for d in range(0, tokenized.num_documents, 37):
        assert tokenized.document_token_span(d) == (starts[d], starts[d + 1])
    return starts


def document_of(tokenized: TokenizedCorpus, tokens: np.ndarray) -> np.ndarray:
    """Document index of each token offset (the last of equal starts: empty documents hold no token)."""
    return np.searchsorted(doc_token_starts(tokenized), tokens, side="right") - 1


def span_documents(tokenized: TokenizedCorpus, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Document of each non-empty span [start, end); asserts the span lies inside one document."""
    assert np.all(end > start)
    first, last = document_of(tokenized, start), document_of(tokenized, end - 1)
    np.testing.assert_array_equal(first, last)
    return first


def mode_units(mode: str, tokenized, in_split_D, max_tokens) -> Units:
    if mode == "sentences":
        return anchor_units(tokenized, in_split_D)
    return chunk_units(tokenized, in_split_D, max_tokens)


def draw(
    mode, tokenized, is_continuation, max_tokens, in_split_D, units_B, rows_B, key=derive_key(7), short_seq_prob=0.1
) -> Instances:
    """Instances of `units_B` for global rows `rows_B`, as the pipeline builds them."""
    chunks = chunk_units(tokenized, in_split_D, max_tokens)
    rng = RowRandom(key, np.asarray(rows_B, dtype=np.int64))
    units_B = np.asarray(units_B, dtype=np.int64)
    if mode == "segments":
        return segment_rows(tokenized, chunks, units_B, max_tokens, short_seq_prob, is_continuation, rng)
    if mode == "sentences":
        return sentence_rows(tokenized, anchor_units(tokenized, in_split_D), chunks, units_B, max_tokens, rng)
    return single_rows(tokenized, chunks, units_B, max_tokens, rng)


def draw_epoch(mode, tokenized, is_continuation, max_tokens, in_split_D, epoch=0, **kwargs) -> Instances:
    """Every unit once, unit i as global row epoch × U + i."""
    count = mode_units(mode, tokenized, in_split_D, max_tokens).count
    units_B = np.arange(count)
    return draw(mode, tokenized, is_continuation, max_tokens, in_split_D, units_B, epoch * count + units_B, **kwargs)


def check_instances(
    tokenized: TokenizedCorpus, instances: Instances, max_tokens: int, nsp: bool, in_split_D: np.ndarray
) -> None:
    """Lengths, documents and NSP label rules of every instance."""
    for name in ("a_start", "a_end", "b_start", "b_end"):
        assert getattr(instances, name).dtype == np.int64
    assert instances.next_sentence_labels.dtype == np.int32
    assert len(instances) > 0
    len_a = instances.a_end - instances.a_start
    len_b = instances.b_end - instances.b_start
    assert np.all(len_a >= 1)
    assert np.all(len_b >= 0)
    assert np.all(len_a + len_b <= max_tokens)
    assert np.all((instances.a_start >= 0) & (instances.b_end <= len(tokenized.token_ids)))
    doc_a = span_documents(tokenized, instances.a_start, instances.a_end)
    assert in_split_D[doc_a].all(), "an A span outside the split"
    labels = instances.next_sentence_labels
    if not nsp:
        assert np.all(len_b == 0) and np.all(labels == 0)
        return
    assert set(np.unique(labels).tolist()) <= {IS_NEXT, NOT_NEXT}
    assert np.all(len_b >= 1)
    doc_b = span_documents(tokenized, instances.b_start, instances.b_end)
    assert in_split_D[doc_b].all(), "a B span outside the split"
    is_next = labels == IS_NEXT
    # NotNext: B always from another document.
    assert np.all(doc_a[~is_next] != doc_b[~is_next])
    # IsNext: same document, B after A; exactly adjacent unless truncation trimmed the pair
    # (truncation leaves exactly max_tokens tokens, so a shorter pair was never trimmed).
    assert np.all(doc_a[is_next] == doc_b[is_next])
    assert np.all(instances.b_start[is_next] >= instances.a_end[is_next])
    untrimmed = is_next & (len_a + len_b < max_tokens)
    np.testing.assert_array_equal(instances.b_start[untrimmed], instances.a_end[untrimmed])


def assert_instances_equal(a: Instances, b: Instances) -> None:
    for name in ("a_start", "a_end", "b_start", "b_end", "next_sentence_labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def spans(instances: Instances) -> list[tuple[int, int, int, int, int]]:
    names = ("a_start", "a_end", "b_start", "b_end", "next_sentence_labels")
    return list(zip(*(getattr(instances, n).tolist() for n in names)))


# --- units --------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [5, *MAX_TOKENS, 10_000])
@pytest.mark.parametrize("split", ["everything", "half"])
def test_chunk_units_tile_each_document(tokenized, request, split, max_tokens):
    in_split_D = request.getfixturevalue(split)
    starts_D1 = doc_token_starts(tokenized)
    lengths_D = np.diff(starts_D1)
    units = chunk_units(tokenized, in_split_D, max_tokens)
    assert units.unit_starts.dtype == np.int64 and len(units.unit_starts) == tokenized.num_documents + 1
    per_document = np.diff(units.unit_starts)
    # ceil(length / max_tokens) windows per document of the split, none elsewhere.
    np.testing.assert_array_equal(per_document, np.where(in_split_D, -(-lengths_D // max_tokens), 0))
    assert units.count == per_document.sum() > 0
    np.testing.assert_array_equal(np.flatnonzero(np.diff(units.unit_starts) > 0), np.flatnonzero(in_split_D & (lengths_D > 0)))

    all_B = np.arange(units.count)
    documents_B, k_B = units.locate(all_B)
    np.testing.assert_array_equal(documents_B, np.repeat(np.arange(tokenized.num_documents), per_document))
    np.testing.assert_array_equal(k_B, np.concatenate([np.arange(n) for n in per_document]))
    chunk_documents_B, start_B, stop_B = chunk_spans(tokenized, units, all_B, max_tokens)
    np.testing.assert_array_equal(chunk_documents_B, documents_B)
    assert np.all(stop_B > start_B)
    np.testing.assert_array_equal(span_documents(tokenized, start_B, stop_B), documents_B)
    # Per document: contiguous, in order, non-overlapping, from its first to its last token.
    first = np.r_[True, documents_B[1:] != documents_B[:-1]]
    last = np.r_[documents_B[1:] != documents_B[:-1], True]
    np.testing.assert_array_equal(start_B[first], starts_D1[documents_B[first]])
    np.testing.assert_array_equal(stop_B[last], starts_D1[documents_B[last] + 1])
    np.testing.assert_array_equal(start_B[~first], stop_B[:-1][~first[1:]])
    covered = np.zeros(len(tokenized.token_ids), dtype=np.int64)
    for s, e in zip(start_B, stop_B):
        covered[s:e] += 1
    in_split_T = np.repeat(in_split_D, lengths_D)
    np.testing.assert_array_equal(covered, in_split_T.astype(np.int64))
    # Every inner edge is window k × max_tokens moved to the first sentence start within half a window.
    sentence_starts = np.asarray(tokenized.sentence_starts)
    window_B = starts_D1[documents_B] + k_B * max_tokens
    next_start_B = sentence_starts[np.searchsorted(sentence_starts, window_B)]
    snaps = (next_start_B <= window_B + max_tokens // 2) & (next_start_B < starts_D1[documents_B + 1])
    np.testing.assert_array_equal(start_B[~first], np.where(snaps, next_start_B, window_B)[~first])
    assert np.all(stop_B - start_B <= max_tokens + max_tokens // 2)
    if max_tokens == 10_000:  # one chunk per document: the whole document
        assert np.all(first & last)
    if max_tokens in MAX_TOKENS:  # the snapping is not vacuous: many inner edges move to a sentence start
        moved = start_B[~first] != window_B[~first]
        assert 0.1 < moved.mean() < 1, moved.mean()


@pytest.mark.parametrize("split", ["everything", "half"])
def test_anchor_units_are_sentences_with_a_successor(tokenized, request, split):
    in_split_D = request.getfixturevalue(split)
    sentences_D = tokenized.sentence_counts()
    anchors = anchor_units(tokenized, in_split_D)
    np.testing.assert_array_equal(np.diff(anchors.unit_starts), np.where(in_split_D, np.maximum(sentences_D - 1, 0), 0))
    np.testing.assert_array_equal(np.flatnonzero(np.diff(anchors.unit_starts) > 0), np.flatnonzero(in_split_D & (sentences_D >= 2)))
    documents_B, k_B = anchors.locate(np.arange(anchors.count))
    assert np.all(k_B + 1 < sentences_D[documents_B])


# --- pairing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("max_tokens", [5, *MAX_TOKENS])
def test_pairs_are_valid(tokenized, is_continuation, half, mode, max_tokens):
    nsp = mode != "single"
    for epoch in range(3):
        instances = draw_epoch(mode, tokenized, is_continuation, max_tokens, half, epoch)
        check_instances(tokenized, instances, max_tokens, nsp, half)
        # A spans never overlap (every unit is its own chunk or sentence).
        order = np.argsort(instances.a_start)
        assert np.all(instances.a_end[order][:-1] <= instances.a_start[order][1:])
        if max_tokens > 5 and nsp:
            # The exact-adjacency check of untrimmed IsNext pairs is not vacuous.
            is_next = instances.next_sentence_labels == IS_NEXT
            len_ab = instances.a_end - instances.a_start + instances.b_end - instances.b_start
            assert (is_next & (len_ab < max_tokens)).sum() > 0.3 * is_next.sum()
            # Untrimmed IsNext B starts a word (a sentence, or a word boundary of a one-sentence chunk).
            untrimmed = is_next & (len_ab < max_tokens)
            assert not is_continuation[tokenized.token_ids[instances.b_start[untrimmed]]].any()
        if mode == "sentences":  # there an IsNext B is also the A of another instance
            continue
        # Chunks: a token is in at most one A or IsNext B, and most of the split is used in an epoch.
        used = np.zeros(len(tokenized.token_ids), dtype=np.int32)
        for s, e in zip(instances.a_start, instances.a_end):
            used[s:e] += 1
        for s, e, label in zip(instances.b_start, instances.b_end, instances.next_sentence_labels):
            if label == IS_NEXT:
                used[s:e] += 1
        assert used.max() == 1
        in_split_T = np.repeat(half, np.diff(doc_token_starts(tokenized)))
        assert not used[~in_split_T].any()
        coverage = used[in_split_T].mean()
        assert coverage > (0.5 if nsp else 0.8), coverage


@pytest.mark.parametrize("mode", MODES)
def test_every_document_of_the_split_is_used(tokenized, is_continuation, half, mode):
    """Over one epoch every document of the split that can hold a unit is an A; NotNext B spread over many."""
    instances = draw_epoch(mode, tokenized, is_continuation, MAX_TOKENS[0], half)
    used = set(span_documents(tokenized, instances.a_start, instances.a_end).tolist())
    minimum = 2 if mode == "sentences" else 1
    assert used == set(np.flatnonzero(half & (tokenized.sentence_counts() >= minimum)).tolist())
    if mode != "single":
        not_next = instances.next_sentence_labels == NOT_NEXT
        doc_b = span_documents(tokenized, instances.b_start[not_next], instances.b_end[not_next])
        assert len(set(doc_b.tolist())) > 0.3 * half.sum()
    # A split of two documents: each pairs only with the other.
    two = np.flatnonzero(tokenized.sentence_counts() >= 3)[[4, 40]]
    in_two_D = np.isin(np.arange(tokenized.num_documents), two)
    for epoch in range(3):
        instances = draw_epoch(mode, tokenized, is_continuation, MAX_TOKENS[0], in_two_D, epoch)
        check_instances(tokenized, instances, MAX_TOKENS[0], mode != "single", in_two_D)
        assert set(span_documents(tokenized, instances.a_start, instances.a_end).tolist()) == set(two.tolist())


@pytest.mark.parametrize("mode", ["segments", "sentences"])
def test_is_next_exactly_adjacent_without_truncation(tokenized, is_continuation, everything, mode):
    """With max_tokens beyond any pair's length, every IsNext B starts exactly where A ends."""
    max_tokens = len(tokenized.token_ids)
    instances = draw_epoch(mode, tokenized, is_continuation, max_tokens, everything, short_seq_prob=0.0)
    check_instances(tokenized, instances, max_tokens, True, everything)
    is_next = instances.next_sentence_labels == IS_NEXT
    assert is_next.sum() > 10
    np.testing.assert_array_equal(instances.b_start[is_next], instances.a_end[is_next])
    if mode == "segments":  # one chunk per document, all of it: A + IsNext B is the document
        starts_D1 = doc_token_starts(tokenized)
        doc = document_of(tokenized, instances.a_start)
        np.testing.assert_array_equal(instances.a_start, starts_D1[doc])
        np.testing.assert_array_equal(instances.b_end[is_next], starts_D1[doc[is_next] + 1])


@pytest.mark.parametrize("mode", ["segments", "sentences"])
def test_is_next_fraction_is_balanced(tokenized, is_continuation, everything, mode):
    labels = [
        draw_epoch(mode, tokenized, is_continuation, MAX_TOKENS[0], everything, epoch).next_sentence_labels
        for epoch in range(20)
    ]
    assert sum(map(len, labels)) > 20_000
    fraction = np.mean(np.concatenate(labels) == IS_NEXT)
    assert abs(fraction - 0.5) < 0.02, fraction
    # And every epoch is balanced too: within 5 binomial standard deviations of 0.5.
    z = [(np.mean(x == IS_NEXT) - 0.5) / (0.5 / np.sqrt(len(x))) for x in labels]
    assert max(map(abs, z)) < 5, z


@pytest.mark.parametrize("mode", MODES)
def test_rows_do_not_depend_on_the_other_rows(tokenized, is_continuation, half, mode):
    """A row's instance is a function of (key, row, unit): the same alone, in any order, in any company."""
    count = mode_units(mode, tokenized, half, MAX_TOKENS[0]).count
    units_B = np.random.default_rng(0).integers(0, count, 400)
    rows_B = 1000 + np.arange(400)
    full = draw(mode, tokenized, is_continuation, MAX_TOKENS[0], half, units_B, rows_B)
    for pick in (np.array([5, 6]), np.array([399, 0, 17]), np.arange(400)[::-1], np.arange(3, 400, 7)):
        part = draw(mode, tokenized, is_continuation, MAX_TOKENS[0], half, units_B[pick], rows_B[pick])
        assert_instances_equal(part, full.take(pick))


@pytest.mark.parametrize("mode", MODES)
def test_pairs_are_redrawn_per_key_and_row(tokenized, is_continuation, everything, mode):
    args = (mode, tokenized, is_continuation, MAX_TOKENS[0], everything)
    a = draw_epoch(*args, key=derive_key(0))
    assert_instances_equal(a, draw_epoch(*args, key=derive_key(0)))
    for b in (draw_epoch(*args, key=derive_key(1)), draw_epoch(*args, epoch=1, key=derive_key(0))):
        differ = np.mean([x != y for x, y in zip(spans(a), spans(b))])
        if mode == "single":  # only truncation is random: chunks longer than max_tokens
            assert differ > 0.02, differ
        else:
            assert differ > 0.25, differ


@pytest.mark.parametrize("max_tokens", [5, *MAX_TOKENS])
def test_single_rows_are_sub_spans_of_chunks(tokenized, is_continuation, half, max_tokens):
    instances = draw_epoch("single", tokenized, is_continuation, max_tokens, half)
    check_instances(tokenized, instances, max_tokens, False, half)
    units = chunk_units(tokenized, half, max_tokens)
    _, start_B, stop_B = chunk_spans(tokenized, units, np.arange(units.count), max_tokens)
    assert np.all((instances.a_start >= start_B) & (instances.a_end <= stop_B))
    # A chunk that fits is taken whole; a longer one is cut to exactly max_tokens.
    fits = stop_B - start_B <= max_tokens
    assert fits.any() and (~fits).any()
    np.testing.assert_array_equal(instances.a_start[fits], start_B[fits])
    np.testing.assert_array_equal(instances.a_end[fits], stop_B[fits])
    assert np.all(instances.a_end[~fits] - instances.a_start[~fits] == max_tokens)


@pytest.mark.parametrize("max_tokens", [5, *MAX_TOKENS])
def test_segment_pairs_stay_inside_their_chunk(tokenized, is_continuation, half, max_tokens):
    """A (and an IsNext B) come from the row's own chunk, A from its start unless truncation trimmed it."""
    instances = draw_epoch("segments", tokenized, is_continuation, max_tokens, half)
    units = chunk_units(tokenized, half, max_tokens)
    _, start_B, stop_B = chunk_spans(tokenized, units, np.arange(units.count), max_tokens)
    assert np.all((instances.a_start >= start_B) & (instances.a_end <= stop_B))
    is_next = instances.next_sentence_labels == IS_NEXT
    assert np.all((instances.b_start[is_next] >= start_B[is_next]) & (instances.b_end[is_next] <= stop_B[is_next]))
    length = instances.a_end - instances.a_start + instances.b_end - instances.b_start
    untrimmed = length < max_tokens
    np.testing.assert_array_equal(instances.a_start[untrimmed], start_B[untrimmed])


def test_short_seq_prob_shortens(tokenized, is_continuation, everything):
    def mean_length(short_seq_prob):
        lengths = []
        for epoch in range(3):
            instances = draw_epoch(
                "segments", tokenized, is_continuation, MAX_TOKENS[1], everything, epoch, short_seq_prob=short_seq_prob
            )
            check_instances(tokenized, instances, MAX_TOKENS[1], True, everything)
            lengths.append(instances.a_end - instances.a_start + instances.b_end - instances.b_start)
        return np.concatenate(lengths).mean()

    long, default, short = mean_length(0.0), mean_length(0.1), mean_length(1.0)
    assert short < 0.9 * long, (short, long)
    assert short < default < long, (short, default, long)


# --- truncate_pairs -----------------------------------------------------------------------------


def reference_truncation(len_a: int, len_b: int, max_tokens: int) -> tuple[int, int]:
    """Google's truncate_seq_pair, token by token: trim the longer side, B on ties."""
    while len_a + len_b > max_tokens:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


def pair_spans(pairs, base=1000):
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
    for rng in (np.random.default_rng(0), RowRandom(derive_key(0), np.array([0]))):
        out = truncate_pairs(pair_spans([(len_a, len_b)]), max_tokens, rng)
        assert (int(out.a_end[0] - out.a_start[0]), int(out.b_end[0] - out.b_start[0])) == expected


def random_pairs(n: int = 5000) -> tuple[np.ndarray, Instances]:
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 200, size=(n, 2))
    pairs[:, 0] = np.maximum(pairs[:, 0], 1)
    before = pair_spans(pairs)
    labels = rng.integers(0, 2, size=len(pairs)).astype(np.int32)
    return pairs, Instances(before.a_start, before.a_end, before.b_start, before.b_end, labels)


def check_truncation(pairs: np.ndarray, before: Instances, after: Instances, max_tokens: int) -> None:
    expected = np.array([reference_truncation(int(a), int(b), max_tokens) for a, b in pairs])
    np.testing.assert_array_equal(after.a_end - after.a_start, expected[:, 0])
    np.testing.assert_array_equal(after.b_end - after.b_start, expected[:, 1])
    np.testing.assert_array_equal(after.next_sentence_labels, before.next_sentence_labels)
    # Sub-spans of the originals.
    assert np.all((after.a_start >= before.a_start) & (after.a_end <= before.a_end))
    assert np.all((after.b_start >= before.b_start) & (after.b_end <= before.b_end))
    # Both ends get trimmed (about evenly), not always the same one.
    front = (after.a_start - before.a_start).sum() + (after.b_start - before.b_start).sum()
    total = (before.a_end - before.a_start + before.b_end - before.b_start).sum() - expected.sum()
    assert total > 10_000
    assert abs(front / total - 0.5) < 0.02


def test_truncate_pairs_matches_reference_and_trims_only_ends():
    pairs, before = random_pairs()
    max_tokens = 125
    after = truncate_pairs(before, max_tokens, np.random.default_rng(1))
    check_truncation(pairs, before, after, max_tokens)
    # Deterministic in the rng.
    assert_instances_equal(truncate_pairs(before, max_tokens, np.random.default_rng(1)), after)


def test_truncate_pairs_with_row_random():
    pairs, before = random_pairs()
    max_tokens = 125
    rows_B = np.arange(len(pairs)) + 10**9  # far global rows
    after = truncate_pairs(before, max_tokens, RowRandom(derive_key(1), rows_B))
    check_truncation(pairs, before, after, max_tokens)
    # Deterministic in (key, rows), and per row: a subset of rows trims as in the full call.
    assert_instances_equal(truncate_pairs(before, max_tokens, RowRandom(derive_key(1), rows_B)), after)
    pick = np.flatnonzero(pairs.sum(axis=1) > max_tokens)[::3][::-1]
    part = truncate_pairs(before.take(pick), max_tokens, RowRandom(derive_key(1), rows_B[pick]))
    assert_instances_equal(part, after.take(pick))
    # Another key trims other ends.
    other = truncate_pairs(before, max_tokens, RowRandom(derive_key(2), rows_B))
    assert np.mean(other.a_start != after.a_start) > 0.3


def test_synthetic_corpora_with_empty_documents_and_tiny_sentences():
    """Valid instances and tiling chunks on random small corpora: empty documents, one-token sentences,
    a split that leaves documents out, max_tokens down to 2."""
    checked = 0
    for trial in range(40):
        rng = np.random.default_rng(trial)
        num_documents = int(rng.integers(2, 12))
        sentences_D = rng.integers(0, 5, num_documents)  # some documents empty
        lengths_S = rng.choice([1, 1, 2, 3, 7, 20, 60], int(sentences_D.sum()))
        token_ids = rng.integers(0, 50, int(lengths_S.sum())).astype(np.int32)
        is_continuation = rng.random(50) < 0.4
        tokenized = TokenizedCorpus(
            token_ids,
            np.concatenate([[0], np.cumsum(lengths_S)]).astype(np.int64),
            np.concatenate([[0], np.cumsum(sentences_D)]).astype(np.int64),
        )
        in_split_D = rng.random(num_documents) < 0.7
        if (in_split_D & (sentences_D > 0)).sum() < 2:
            continue
        starts_D1 = doc_token_starts(tokenized)
        for max_tokens in (2, 3, 5, 17, 61):
            chunks = chunk_units(tokenized, in_split_D, max_tokens)
            documents_B, start_B, stop_B = chunk_spans(tokenized, chunks, np.arange(chunks.count), max_tokens)
            covered = np.zeros(len(token_ids), dtype=np.int64)
            for s, e in zip(start_B, stop_B):
                covered[s:e] += 1
            np.testing.assert_array_equal(covered, np.repeat(in_split_D, np.diff(starts_D1)))
            assert np.all(span_documents(tokenized, start_B, stop_B) == documents_B)
            for mode in MODES:
                units = mode_units(mode, tokenized, in_split_D, max_tokens)
                if units.count == 0:
                    continue
                for epoch in range(2):
                    units_B = np.arange(units.count)
                    rows_B = epoch * units.count + units_B
                    instances = draw(
                        mode, tokenized, is_continuation, max_tokens, in_split_D, units_B, rows_B, derive_key(trial)
                    )
                    check_instances(tokenized, instances, max_tokens, mode != "single", in_split_D)
                    checked += len(instances)
    assert checked > 5000
