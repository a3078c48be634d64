"""The corpus as token ids: sentences back to back in one array, with offsets.

The arrays are plain NumPy in memory for a small corpus built in a test, or memory-mapped views
of a prepared dataset (`data/prepared_files.py`), where the token array may span several files.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING, Sequence

import numpy as np
from tokenizers import Tokenizer

from bert_flax.data.sentences import split_sentences

if TYPE_CHECKING:  # transformers is heavy, and prepare's worker processes import this module
    from transformers import PreTrainedTokenizerBase


class ShardedTokens:
    """Token ids stored in several arrays, indexed as one: `tokens[offsets]` gathers across shards."""

    def __init__(self, shards: Sequence[np.ndarray]) -> None:
        self.shards = list(shards)
        self.shard_starts = np.concatenate([[0], np.cumsum([len(s) for s in self.shards])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.shard_starts[-1])

    def __getitem__(self, index: np.ndarray | slice | int) -> np.ndarray:
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index, dtype=np.int64)
        if len(self.shards) == 1:
            return np.asarray(self.shards[0][index])
        shard = np.searchsorted(self.shard_starts, index, side="right") - 1
        out = np.empty(index.shape, dtype=self.shards[0].dtype)
        for s in np.unique(shard):
            here = shard == s
            out[here] = self.shards[s][index[here] - self.shard_starts[s]]
        return out


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
    """Document d holds sentences sentence_starts[document_starts[d]:document_starts[d + 1]] ...

    ... and sentence s holds token_ids[sentence_starts[s]:sentence_starts[s + 1]]. A document whose
    sentences all tokenize to nothing is empty (kept, so document indices match the text's).
    """

    token_ids: np.ndarray | ShardedTokens  # [T], uint16 or int32
    sentence_starts: np.ndarray  # int64 [S + 1]
    document_starts: np.ndarray  # int64 [D + 1]

    @property
    def num_documents(self) -> int:
        return len(self.document_starts) - 1

    def sentence_counts(self) -> np.ndarray:
        """int64 [D]: sentences per document."""
        return np.diff(self.document_starts)

    def document_token_starts(self) -> np.ndarray:
        """int64 [D + 1]: the token offset where every document starts (and the corpus end)."""
        return np.asarray(self.sentence_starts[self.document_starts])

    def document_token_span(self, document: int) -> tuple[int, int]:
        first, last = self.document_starts[document], self.document_starts[document + 1]
        return int(self.sentence_starts[first]), int(self.sentence_starts[last])


def plain_tokenizer(tokenizer: "PreTrainedTokenizerBase | Tokenizer") -> Tokenizer:
    """A copy of the `tokenizers` backend that neither truncates nor pads."""
    backend = tokenizer if isinstance(tokenizer, Tokenizer) else tokenizer.backend_tokenizer
    plain = Tokenizer.from_str(backend.to_str())
    plain.no_truncation()
    plain.no_padding()
    return plain


def encode_documents(documents: Sequence[str], tokenizer: Tokenizer, token_dtype: type = np.int32) -> TokenizedCorpus:
    """Split every document into sentences and tokenize them (no special tokens); offsets start at 0."""
    sentences: list[str] = []
    sentences_per_document = np.empty(len(documents), dtype=np.int64)
    for d, document in enumerate(documents):
        pieces = split_sentences(document)
        sentences.extend(pieces)
        sentences_per_document[d] = len(pieces)
    encoded = [e.ids for e in tokenizer.encode_batch(sentences, add_special_tokens=False)] if sentences else []
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    # Drop sentences that tokenize to nothing, keeping documents aligned with the text.
    kept_before = np.concatenate([[0], np.cumsum(lengths > 0)])
    document_starts = np.concatenate([[0], np.cumsum(sentences_per_document)])
    token_ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype=token_dtype, count=int(lengths.sum()))
    return TokenizedCorpus(
        token_ids=token_ids,
        sentence_starts=np.concatenate([[0], np.cumsum(lengths[lengths > 0])]).astype(np.int64),
        document_starts=kept_before[document_starts].astype(np.int64),
    )


def tokenize_documents(documents: Sequence[str], tokenizer: "PreTrainedTokenizerBase") -> TokenizedCorpus:
    """`encode_documents` with a transformers tokenizer, in memory (small corpora and tests)."""
    return encode_documents(documents, plain_tokenizer(tokenizer))
