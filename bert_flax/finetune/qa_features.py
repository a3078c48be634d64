"""Question + context windows for extractive QA: token ids, answer-span labels and character offsets.

A context longer than the room left after the question is cut into overlapping windows ("features").
Each window is `[CLS] question [SEP] context piece [SEP] [PAD]...`, `max_seq_len` tokens. With
`room = max_seq_len - question_tokens - 3` context tokens per window and `doc_stride` tokens shared by
consecutive windows (Hugging Face's `stride`: the overlap, not the step), a context of C tokens gives
`1` window when C <= room, else `1 + ceil((C - room) / (room - doc_stride))` (see `window_count`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from bert_flax.errors import UserError
from bert_flax.finetune.squad import QAExample

NOT_CONTEXT = -1  # offset of a token that is not part of the context ([CLS], question, [SEP], [PAD])
_CHUNK = 512  # examples tokenized at a time: the tokenizer's Python lists of offsets are large


@dataclasses.dataclass(frozen=True)
class QAFeatures:
    """N windows of length L. Labels are token indices inside the window; 0 ([CLS]) means "no answer here".

    `offsets_NxLx2[n, t]` is the (start, end) character span of token t in its example's context, or
    (-1, -1) when the token is not a context token. `example_index_N[n]` is the example window n belongs to.
    """

    input_ids_NxL: np.ndarray
    token_type_ids_NxL: np.ndarray
    attention_mask_NxL: np.ndarray
    start_positions_N: np.ndarray
    end_positions_N: np.ndarray
    example_index_N: np.ndarray
    offsets_NxLx2: np.ndarray

    @property
    def num_features(self) -> int:
        return int(self.input_ids_NxL.shape[0])


def window_count(context_tokens: int, question_tokens: int, max_seq_len: int, doc_stride: int) -> int:
    """How many windows a context of `context_tokens` gets next to a question of `question_tokens`."""
    room = max_seq_len - question_tokens - 3
    if context_tokens <= room:
        return 1
    return 1 + math.ceil((context_tokens - room) / (room - doc_stride))


def make_features(
    examples: Sequence[QAExample], tokenizer: Any, max_seq_len: int, doc_stride: int, max_query_len: int
) -> QAFeatures:
    """Tokenize every (question, context) into windows and label each window with the first answer's span.

    `tokenizer` must be a Hugging Face fast tokenizer (offsets are needed). Questions are cut to
    `max_query_len` tokens first; `doc_stride` must be smaller than the room the longest allowed question
    leaves, `max_seq_len - max_query_len - 3`. A window is labelled with the answer only when the whole
    answer lies inside it; otherwise, and for impossible questions, both labels are 0.
    """
    _check_arguments(tokenizer, max_seq_len, doc_stride, max_query_len)
    if not examples:
        raise UserError("there are no QA examples to make features from; check the data file")
    parts = [
        _chunk_features(examples[begin : begin + _CHUNK], begin, tokenizer, max_seq_len, doc_stride, max_query_len)
        for begin in range(0, len(examples), _CHUNK)
    ]
    names = [field.name for field in dataclasses.fields(QAFeatures)]
    return QAFeatures(**{name: np.concatenate([getattr(part, name) for part in parts]) for name in names})


def _check_arguments(tokenizer: Any, max_seq_len: int, doc_stride: int, max_query_len: int) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("QA features need a fast (Rust) tokenizer for character offsets; load it with use_fast=True")
    if max_query_len < 1 or doc_stride < 0:
        raise UserError(f"max_query_len ({max_query_len}) must be >= 1 and doc_stride ({doc_stride}) >= 0")
    room = max_seq_len - max_query_len - 3
    if doc_stride >= room:
        raise UserError(
            f"doc_stride {doc_stride} must be smaller than max_seq_len - max_query_len - 3 = {room} "
            "(the context tokens a window holds); lower doc_stride or max_query_len, or raise max_seq_len"
        )


def _chunk_features(
    examples: Sequence[QAExample],
    first_index: int,
    tokenizer: Any,
    max_seq_len: int,
    doc_stride: int,
    max_query_len: int,
) -> QAFeatures:
    """Features of `examples`, whose first one is example number `first_index`."""
    questions = _truncated_questions([example.question for example in examples], tokenizer, max_query_len)
    encoding = tokenizer(
        questions,
        [example.context for example in examples],
        truncation="only_second",
        max_length=max_seq_len,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    sample_N = np.asarray(encoding["overflow_to_sample_mapping"], dtype=np.int32)
    num_features = len(sample_N)
    offsets_NxLx2 = np.full((num_features, max_seq_len, 2), NOT_CONTEXT, dtype=np.int32)
    start_positions_N = np.zeros(num_features, dtype=np.int32)
    end_positions_N = np.zeros(num_features, dtype=np.int32)
    for n in range(num_features):
        is_context_L = np.array([sequence == 1 for sequence in encoding.sequence_ids(n)])
        offsets_NxLx2[n][is_context_L] = np.asarray(encoding["offset_mapping"][n], dtype=np.int32)[is_context_L]
        example = examples[sample_N[n]]
        if not example.is_impossible:
            answer_start = example.answer_starts[0]
            span = _answer_tokens(offsets_NxLx2[n], answer_start, answer_start + len(example.answer_texts[0]))
            start_positions_N[n], end_positions_N[n] = span
    return QAFeatures(
        input_ids_NxL=np.asarray(encoding["input_ids"], dtype=np.int32),
        token_type_ids_NxL=np.asarray(encoding["token_type_ids"], dtype=np.int32),
        attention_mask_NxL=np.asarray(encoding["attention_mask"], dtype=np.int32),
        start_positions_N=start_positions_N,
        end_positions_N=end_positions_N,
        example_index_N=sample_N + first_index,
        offsets_NxLx2=offsets_NxLx2,
    )


def _truncated_questions(questions: list[str], tokenizer: Any, max_query_len: int) -> list[str]:
    """Each question cut after its `max_query_len`-th token (leading whitespace dropped)."""
    questions = [question.lstrip() for question in questions]
    encoding = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    truncated = []
    for question, offsets in zip(questions, encoding["offset_mapping"]):
        truncated.append(question if len(offsets) <= max_query_len else question[: offsets[max_query_len - 1][1]])
    return truncated


def _answer_tokens(offsets_Lx2: np.ndarray, char_start: int, char_end: int) -> tuple[int, int]:
    """(first, last) token of the answer chars [char_start, char_end) when all lie in the window, else (0, 0)."""
    context_tokens = np.flatnonzero(offsets_Lx2[:, 0] != NOT_CONTEXT)
    if offsets_Lx2[context_tokens[0], 0] > char_start or offsets_Lx2[context_tokens[-1], 1] < char_end:
        return 0, 0
    # The tightest cover: the first token ending after the answer starts, the last starting before it ends.
    first = context_tokens[offsets_Lx2[context_tokens, 1] > char_start][0]
    last = context_tokens[offsets_Lx2[context_tokens, 0] < char_end][-1]
    return (int(first), int(last)) if first <= last else (0, 0)
