"""The corpus as token ids: sentences back to back in one array, with offsets (cached as .npz)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from bert_flax.data.corpus import Corpus
from bert_flax.data.sentences import split_sentences
from bert_flax.disk import write_file

# Bump when splitting or tokenizing changes, so old caches are not reused.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
    """Document d holds sentences sentence_starts[document_starts[d]:document_starts[d + 1]] ...

    ... and sentence s holds token_ids[sentence_starts[s]:sentence_starts[s + 1]]. Documents are
    indexed as in the Corpus; one whose sentences all tokenize to nothing is empty.
    """

    token_ids: np.ndarray  # int32 [T]
    sentence_starts: np.ndarray  # int64 [S + 1]
    document_starts: np.ndarray  # int64 [D + 1]

    @property
    def num_documents(self) -> int:
        return len(self.document_starts) - 1

    def sentence_counts(self) -> np.ndarray:
        """int64 [D]: sentences per document."""
        return np.diff(self.document_starts)

    def document_token_span(self, document: int) -> tuple[int, int]:
        first, last = self.document_starts[document], self.document_starts[document + 1]
        return int(self.sentence_starts[first]), int(self.sentence_starts[last])


def tokenize_documents(documents: tuple[str, ...] | list[str], tokenizer: PreTrainedTokenizerBase) -> TokenizedCorpus:
    """Split every document into sentences and tokenize them (no special tokens)."""
    sentences: list[str] = []
    document_starts = [0]
    for document in documents:
        sentences.extend(split_sentences(document))
        document_starts.append(len(sentences))
    encoded = tokenizer(sentences, add_special_tokens=False, verbose=False)["input_ids"] if sentences else []
    lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
    # Drop sentences that tokenize to nothing, keeping documents aligned with the corpus.
    keep = lengths > 0
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    token_ids = np.fromiter((t for ids in encoded for t in ids), dtype=np.int32, count=int(lengths.sum()))
    return TokenizedCorpus(
        token_ids=token_ids,
        sentence_starts=np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64),
        document_starts=kept_before[np.asarray(document_starts)].astype(np.int64),
    )


def _cache_key(corpus: Corpus, tokenizer: PreTrainedTokenizerBase) -> str:
    # Truncation and padding are left out: transformers rewrites them on every call, and
    # tokenize_documents neither truncates nor pads.
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    tokenizer_state = json.dumps(state, sort_keys=True)
    return hashlib.sha256(f"{FORMAT_VERSION}|{corpus.sha256}|{tokenizer_state}".encode()).hexdigest()[:24]


def tokenize_corpus(corpus: Corpus, tokenizer: PreTrainedTokenizerBase, cache_dir: Path | None) -> TokenizedCorpus:
    """`tokenize_documents`, cached under `cache_dir/tokenized` by corpus and tokenizer hash."""
    if cache_dir is None:
        return tokenize_documents(corpus.documents, tokenizer)
    path = cache_dir / "tokenized" / f"{_cache_key(corpus, tokenizer)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return TokenizedCorpus(**{f.name: arrays[f.name] for f in dataclasses.fields(TokenizedCorpus)})
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a damaged cache entry is rebuilt below
    tokenized = tokenize_documents(corpus.documents, tokenizer)
    write_file(path, lambda f: np.savez(f, **dataclasses.asdict(tokenized)))
    return tokenized
