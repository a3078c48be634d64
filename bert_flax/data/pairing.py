"""NSP pairing, row by row: (A, B, label) instances as token spans of a TokenizedCorpus.

An epoch visits *units* in a shuffled order: per document, its windows of `max_tokens` tokens
("chunks", for segments pairing and MLM only) or its sentences that have a successor ("anchors",
for sentences pairing). A row is built from its unit and its own random draws alone, so no pass
over the corpus is needed per epoch and any row can be rebuilt from its index.

Every segment is a contiguous span of the corpus' token array, so an instance is four offsets:
A = token_ids[a_start:a_end], B = token_ids[b_start:b_end] (empty when b_start == b_end).
Labels follow Hugging Face: 0 = IsNext (B continues A), 1 = NotNext (B from another document).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bert_flax.data.row_random import RowRandom
from bert_flax.data.token_corpus import TokenizedCorpus

IS_NEXT, NOT_NEXT = 0, 1
NSP_LABEL_NAMES = ("IsNext", "NotNext")  # by label


@dataclasses.dataclass(frozen=True)
class Instances:
    """N pre-training examples as token spans (int64 [N] each) and NSP labels (int32 [N])."""

    a_start: np.ndarray
    a_end: np.ndarray
    b_start: np.ndarray
    b_end: np.ndarray
    next_sentence_labels: np.ndarray

    def __len__(self) -> int:
        return len(self.a_start)

    def take(self, index: np.ndarray | slice) -> "Instances":
        return Instances(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    @classmethod
    def from_lists(cls, a_start, a_end, b_start, b_end, labels) -> "Instances":
        spans = [np.asarray(x, dtype=np.int64) for x in (a_start, a_end, b_start, b_end)]
        return cls(*spans, next_sentence_labels=np.asarray(labels, dtype=np.int32))


@dataclasses.dataclass(frozen=True)
class Units:
    """The units of one split: unit_starts[d] units come before document d (int64 [D + 1]).

    Documents outside the split hold no units, so a unit index maps to its document with one
    binary search and nothing per document is materialised beyond this array.
    """

    unit_starts: np.ndarray

    @property
    def count(self) -> int:
        return int(self.unit_starts[-1])

    def locate(self, units_B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(document, index of the unit within its document) of every unit."""
        documents_B = np.searchsorted(self.unit_starts, units_B, side="right") - 1
        return documents_B, units_B - self.unit_starts[documents_B]


def _units(counts_D: np.ndarray, in_split_D: np.ndarray) -> Units:
    counts_D = np.where(in_split_D, counts_D, 0)
    return Units(np.concatenate([[0], np.cumsum(counts_D)]).astype(np.int64))


def chunk_units(tokenized: TokenizedCorpus, in_split_D: np.ndarray, max_tokens: int) -> Units:
    """Windows of `max_tokens` tokens of every document in the split (the last one shorter)."""
    lengths_D = np.diff(tokenized.document_token_starts())
    return _units(-(-lengths_D // max_tokens), in_split_D)


def anchor_units(tokenized: TokenizedCorpus, in_split_D: np.ndarray) -> Units:
    """The sentences of every document in the split that have a successor in their document."""
    return _units(np.maximum(tokenized.sentence_counts() - 1, 0), in_split_D)


def _document_spans(tokenized: TokenizedCorpus, documents_B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = tokenized.sentence_starts
    return starts[tokenized.document_starts[documents_B]], starts[tokenized.document_starts[documents_B + 1]]


def _first_start_at_or_after(tokenized: TokenizedCorpus, offsets_B: np.ndarray) -> np.ndarray:
    """The first sentence start >= offset (the corpus end past the last sentence)."""
    starts = tokenized.sentence_starts
    return starts[np.minimum(np.searchsorted(starts, offsets_B, side="left"), len(starts) - 1)]


def _snap(tokenized: TokenizedCorpus, edge_B: np.ndarray, end_B: np.ndarray, reach: int) -> np.ndarray:
    """A chunk edge moved forward to a sentence start within `reach` tokens (not the document's end)."""
    start_B = _first_start_at_or_after(tokenized, edge_B)
    snapped_B = np.where((start_B <= edge_B + reach) & (start_B < end_B), start_B, edge_B)
    return np.where(edge_B >= end_B, end_B, snapped_B)


def chunk_spans(
    tokenized: TokenizedCorpus, units: Units, units_B: np.ndarray, max_tokens: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document, start, end) of every chunk.

    Chunk k of a document covers its tokens [k × max_tokens, (k + 1) × max_tokens), each edge moved
    to the next sentence start when one lies within half a window: neighbouring chunks share the
    edge, so chunks tile their document, and most start and end at sentence boundaries.
    """
    documents_B, k_B = units.locate(units_B)
    first_B, end_B = _document_spans(tokenized, documents_B)
    window_B = first_B + k_B * max_tokens
    reach = max_tokens // 2
    start_B = np.where(k_B == 0, first_B, _snap(tokenized, window_B, end_B, reach))
    stop_B = _snap(tokenized, np.minimum(window_B + max_tokens, end_B), end_B, reach)
    return documents_B, start_B, stop_B


def _other_documents(units: Units, documents_B: np.ndarray, rng: RowRandom) -> np.ndarray:
    """A document other than each row's own, drawn in proportion to its units (its length)."""
    first_B = units.unit_starts[documents_B]
    own_B = units.unit_starts[documents_B + 1] - first_B
    drawn_B = rng.integers(0, np.maximum(units.count - own_B, 1))
    return units.locate(np.where(drawn_B < first_B, drawn_B, drawn_B + own_B))[0]


def _random_word_start(
    tokenized: TokenizedCorpus,
    start_B: np.ndarray,
    end_B: np.ndarray,
    wanted_B: np.ndarray,
    is_continuation_V: np.ndarray,
    rng: RowRandom,
) -> np.ndarray:
    """A random word-starting token offset inside (start, end) for the wanted rows; -1 where none."""
    span_B = np.where(wanted_B, end_B - start_B - 1, 0)
    width = max(1, int(span_B.max(initial=0)))
    score_BxW = rng.random((len(start_B), width))  # drawn for every row: the draws stay per row
    offset_BxW = start_B[:, None] + 1 + np.arange(width)[None, :]
    inside_BxW = np.arange(width)[None, :] < span_B[:, None]
    token_BxW = tokenized.token_ids[np.where(inside_BxW, offset_BxW, 0)]
    candidate_BxW = inside_BxW & ~is_continuation_V[token_BxW]
    best_B = np.argmax(np.where(candidate_BxW, score_BxW, -1.0), axis=1)
    found_B = candidate_BxW.any(axis=1)
    return np.where(found_B, start_B + 1 + best_B, -1)


def _random_b(
    tokenized: TokenizedCorpus, units: Units, documents_B: np.ndarray, target_B: np.ndarray, rng: RowRandom
) -> tuple[np.ndarray, np.ndarray]:
    """NotNext B: from a random sentence of another document, sentences up to `target` tokens."""
    other_B = _other_documents(units, documents_B, rng)
    first_B, end_B = _document_spans(tokenized, other_B)
    anywhere_B = rng.integers(first_B, end_B)
    starts = tokenized.sentence_starts
    b_start_B = starts[np.searchsorted(starts, anywhere_B, side="right") - 1]
    b_end_B = np.minimum(_first_start_at_or_after(tokenized, b_start_B + np.maximum(target_B, 1)), end_B)
    return b_start_B, b_end_B


def segment_rows(
    tokenized: TokenizedCorpus,
    units: Units,
    units_B: np.ndarray,
    max_tokens: int,
    short_seq_prob: float,
    is_continuation_V: np.ndarray,
    rng: RowRandom,
) -> Instances:
    """Google's create_instances_from_document, one chunk per row, with a balanced label.

    Sentences of the chunk accumulate up to a target length (shorter with `short_seq_prob`); A
    ends at a random sentence boundary inside them; with probability 0.5 B is the rest (IsNext),
    else sentences from a random other document (NotNext). A one-sentence chunk that draws IsNext
    is cut at a random word boundary instead, so IsNext stays at 50%; with no word boundary it
    becomes NotNext.
    """
    documents_B, start_B, stop_B = chunk_spans(tokenized, units, units_B, max_tokens)
    short_B = rng.random(len(units_B)) < short_seq_prob
    target_B = np.where(short_B, rng.integers(2, max_tokens + 1, len(units_B)), max_tokens)
    used_end_B = np.minimum(_first_start_at_or_after(tokenized, start_B + target_B), stop_B)
    starts = tokenized.sentence_starts
    first_inner_B = np.searchsorted(starts, start_B, side="right")
    inner_B = np.maximum(np.searchsorted(starts, used_end_B, side="left") - first_inner_B, 0)
    not_next_B = rng.random(len(units_B)) < 0.5
    picked_B = first_inner_B + rng.integers(0, np.maximum(inner_B, 1))
    sentence_cut_B = starts[np.minimum(picked_B, len(starts) - 1)]
    word_cut_B = _random_word_start(
        tokenized, start_B, used_end_B, (inner_B == 0) & ~not_next_B, is_continuation_V, rng
    )
    cut_B = np.where(inner_B > 0, sentence_cut_B, word_cut_B)
    not_next_B |= cut_B < 0
    a_end_B = np.where(cut_B >= 0, cut_B, used_end_B)
    random_start_B, random_end_B = _random_b(tokenized, units, documents_B, target_B - (a_end_B - start_B), rng)
    instances = Instances(
        a_start=start_B,
        a_end=a_end_B,
        b_start=np.where(not_next_B, random_start_B, a_end_B),
        b_end=np.where(not_next_B, random_end_B, used_end_B),
        next_sentence_labels=not_next_B.astype(np.int32),
    )
    return truncate_pairs(instances, max_tokens, rng)


def sentence_rows(
    tokenized: TokenizedCorpus, anchors: Units, chunks: Units, units_B: np.ndarray, max_tokens: int, rng: RowRandom
) -> Instances:
    """The original notebook's sentence pairs without its label noise: the anchor sentence A, then either its successor
    (IsNext) or a random sentence of another document (NotNext, drawn from `chunks`' documents), 50/50."""
    documents_B, k_B = anchors.locate(units_B)
    a_B = tokenized.document_starts[documents_B] + k_B
    starts = tokenized.sentence_starts
    not_next_B = rng.random(len(units_B)) < 0.5
    other_B = _other_documents(chunks, documents_B, rng)
    first_B = tokenized.document_starts[other_B]
    random_B = first_B + rng.integers(0, tokenized.document_starts[other_B + 1] - first_B)
    instances = Instances(
        a_start=starts[a_B],
        a_end=starts[a_B + 1],
        b_start=np.where(not_next_B, starts[random_B], starts[a_B + 1]),
        b_end=np.where(not_next_B, starts[random_B + 1], starts[a_B + 2]),
        next_sentence_labels=not_next_B.astype(np.int32),
    )
    return truncate_pairs(instances, max_tokens, rng)


def single_rows(
    tokenized: TokenizedCorpus, units: Units, units_B: np.ndarray, max_tokens: int, rng: RowRandom
) -> Instances:
    """MLM-only examples: one chunk per row, no B, label 0."""
    _, start_B, stop_B = chunk_spans(tokenized, units, units_B, max_tokens)
    empty_B = np.zeros(len(units_B), dtype=np.int32)
    return truncate_pairs(Instances(start_B, stop_B, stop_B, stop_B, empty_B), max_tokens, rng)


def truncate_pairs(instances: Instances, max_tokens: int, rng: RowRandom | np.random.Generator) -> Instances:
    """Google's truncate_seq_pair in closed form: trim the longer side, one token at a time from a random end.

    Ties trim B first, so B loses ceil(r / 2) of the tokens removed once both sides are equal.
    """
    len_a = instances.a_end - instances.a_start
    len_b = instances.b_end - instances.b_start
    excess = np.maximum(len_a + len_b - max_tokens, 0)
    first = np.minimum(excess, np.abs(len_a - len_b))
    rest = excess - first
    cut_a = np.where(len_a > len_b, first, 0) + rest // 2
    cut_b = np.where(len_a > len_b, 0, first) + rest - rest // 2
    front_a = rng.binomial(cut_a, 0.5)
    front_b = rng.binomial(cut_b, 0.5)
    return dataclasses.replace(
        instances,
        a_start=instances.a_start + front_a,
        a_end=instances.a_end - (cut_a - front_a),
        b_start=instances.b_start + front_b,
        b_end=instances.b_end - (cut_b - front_b),
    )
