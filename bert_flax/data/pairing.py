"""NSP pairing: (A, B, label) instances as token spans of a TokenizedCorpus.

Every segment is a contiguous span of the corpus' token array, so an instance is four offsets:
A = token_ids[a_start:a_end], B = token_ids[b_start:b_end] (empty when b_start == b_end).
Labels follow Hugging Face: 0 = IsNext (B continues A), 1 = NotNext (B from another document).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bert_flax.data.tokenized import TokenizedCorpus

IS_NEXT, NOT_NEXT = 0, 1


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


def segment_bounds(tokenized: TokenizedCorpus, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Sentences with those over `max_tokens` cut into consecutive pieces ("segments").

    Returns (bounds int64 [G + 1], token offsets of the segments; document_segments int64 [D + 1],
    segment offsets of the documents).
    """
    starts = tokenized.sentence_starts
    lengths = np.diff(starts)
    pieces = np.maximum(1, -(-lengths // max_tokens))
    first_piece = np.concatenate([[0], np.cumsum(pieces)])
    sentence_of_piece = np.repeat(np.arange(len(lengths)), pieces)
    piece_in_sentence = np.arange(first_piece[-1]) - first_piece[sentence_of_piece]
    bounds = np.append(starts[sentence_of_piece] + piece_in_sentence * max_tokens, starts[-1])
    return bounds.astype(np.int64), first_piece[tokenized.document_starts].astype(np.int64)


def truncate_pairs(instances: Instances, max_tokens: int, rng: np.random.Generator) -> Instances:
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


def _split_documents(document_segments: np.ndarray, documents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) segment offsets of the non-empty documents among `documents`."""
    first = document_segments[documents]
    last = document_segments[documents + 1]
    keep = last > first
    return first[keep], last[keep]


def segment_pairs(
    bounds: np.ndarray,
    document_segments: np.ndarray,
    documents: np.ndarray,
    max_tokens: int,
    short_seq_prob: float,
    word_start_T: np.ndarray,
    rng: np.random.Generator,
) -> Instances:
    """Google's create_instances_from_document over `documents`, with a balanced label.

    Per document, segments accumulate up to a target length (shorter with `short_seq_prob`);
    the chunk is cut into A and B at a random segment boundary, and with probability 0.5 B is
    replaced by segments from a random other document (the unused segments are put back).
    A one-segment chunk that draws IsNext is cut at a random word boundary inside the segment,
    so IsNext stays at 50% instead of Google's bias towards NotNext.
    """
    firsts, lasts = _split_documents(document_segments, documents)
    num_docs = len(firsts)
    columns: tuple[list[int], ...] = ([], [], [], [], [])
    for doc in range(num_docs):
        first, last = int(firsts[doc]), int(lasts[doc])
        target = max_tokens if rng.random() >= short_seq_prob else int(rng.integers(2, max_tokens + 1))
        chunk_first, i = first, first
        while i < last:
            if i < last - 1 and bounds[i + 1] - bounds[chunk_first] < target:
                i += 1
                continue
            num_segments = i + 1 - chunk_first
            a_end_segment = chunk_first + (int(rng.integers(1, num_segments)) if num_segments >= 2 else 1)
            a_start, a_end = int(bounds[chunk_first]), int(bounds[a_end_segment])
            if rng.random() < 0.5:
                other = int(rng.integers(0, num_docs - 1))
                other += other >= doc
                start = int(rng.integers(firsts[other], lasts[other]))
                wanted = int(bounds[start]) + target - (a_end - a_start)
                end = min(max(int(np.searchsorted(bounds, wanted)), start + 1), int(lasts[other]))
                row = (a_start, a_end, int(bounds[start]), int(bounds[end]), NOT_NEXT)
                i = a_end_segment - 1  # put the unused segments back
            elif num_segments >= 2:
                row = (a_start, a_end, a_end, int(bounds[i + 1]), IS_NEXT)
            else:
                cuts = np.flatnonzero(word_start_T[a_start + 1 : a_end]) + a_start + 1
                row = None
                if len(cuts):
                    cut = int(cuts[rng.integers(len(cuts))])
                    row = (a_start, cut, cut, a_end, IS_NEXT)
            if row is not None:
                for column, value in zip(columns, row):
                    column.append(value)
            chunk_first = i + 1
            i += 1
    return truncate_pairs(Instances.from_lists(*columns), max_tokens, rng)


def sentence_pairs(
    bounds: np.ndarray, document_segments: np.ndarray, documents: np.ndarray, max_tokens: int, rng: np.random.Generator
) -> Instances:
    """The seed's pairs without its label noise: a sentence A that has a successor, then either
    that successor (IsNext) or a random sentence of another document (NotNext), 50/50."""
    firsts, lasts = _split_documents(document_segments, documents)
    with_successor = np.maximum(lasts - firsts - 1, 0)
    owner = np.repeat(np.arange(len(firsts)), with_successor)
    a_segment = np.concatenate([np.arange(f, l - 1) for f, l in zip(firsts, lasts)] + [np.zeros(0, np.int64)])
    not_next = rng.random(len(owner)) < 0.5
    other = rng.integers(0, len(firsts) - 1, size=len(owner))
    other += other >= owner
    random_segment = firsts[other] + (rng.random(len(owner)) * (lasts[other] - firsts[other])).astype(np.int64)
    b_segment = np.where(not_next, random_segment, a_segment + 1)
    instances = Instances.from_lists(
        bounds[a_segment], bounds[a_segment + 1], bounds[b_segment], bounds[b_segment + 1], not_next.astype(np.int32)
    )
    return truncate_pairs(instances, max_tokens, rng)


def single_segments(
    bounds: np.ndarray, document_segments: np.ndarray, documents: np.ndarray, max_tokens: int, rng: np.random.Generator
) -> Instances:
    """MLM-only examples: runs of consecutive segments up to `max_tokens`, no B, label 0."""
    firsts, lasts = _split_documents(document_segments, documents)
    starts, ends = [], []
    for first, last in zip(firsts.tolist(), lasts.tolist()):
        chunk_first = first
        for i in range(first, last):
            if i == last - 1 or bounds[i + 2] - bounds[chunk_first] > max_tokens:
                starts.append(int(bounds[chunk_first]))
                ends.append(int(bounds[i + 1]))
                chunk_first = i + 1
    empty = np.asarray(ends, dtype=np.int64)
    return truncate_pairs(Instances.from_lists(starts, ends, empty, empty, np.zeros(len(starts))), max_tokens, rng)
