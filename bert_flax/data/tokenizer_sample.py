"""A bounded, seeded sample of a corpus' documents (what a tokenizer is trained on).

A file corpus larger than the sample is read in windows of about 1 MB at seeded offsets, one
window per equal stratum of the bytes, each starting after the first document boundary in it:
only about `sample_bytes` are read, however large the corpus. A `datasets` source gives its first
`sample_bytes` of documents (a stream has no offsets to seek to).
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import numpy as np

from bert_flax.config import DataConfig
from bert_flax.data.documents import first_document_end, last_document_end, split_documents, strip_bom
from bert_flax.data.reader import decode_utf8, read_chunks, source_identity, total_bytes
from bert_flax.data.row_random import RowRandom, Stream, derive_key
from bert_flax.storage import AnyPath, to_path

WINDOW_BYTES = 1 << 20


def sample_key(data: DataConfig, sample_bytes: int) -> list[Any]:
    """Everything the sample depends on (nothing is read)."""
    return [source_identity(data), data.documents, sample_bytes, WINDOW_BYTES]


def _window_documents(path: AnyPath, offset: int, size: int, mode: str) -> list[str]:
    """The whole documents inside bytes [offset, offset + size) of `path`."""
    with path.open("rb") as f:
        f.seek(offset)
        raw = f.read(size)
    at_end = len(raw) < size
    if offset > 0:  # start after the first boundary: the window may begin inside a document
        skip = first_document_end(raw, mode)
        raw, offset = raw[skip:], offset + skip
    else:
        raw, offset = strip_bom(raw)
    end = len(raw) if at_end else last_document_end(raw, mode)
    return split_documents(decode_utf8(raw[:end], path, offset), mode)


def _file_windows(identity: list[dict[str, Any]], sample_bytes: int) -> Iterator[tuple[AnyPath, int, int]]:
    """(file, offset, size) of one window per stratum of the corpus' bytes, seeded; a window is no
    larger than its stratum, so windows never overlap (no document is sampled twice)."""
    sizes = np.array([source["bytes"] for source in identity], dtype=np.int64)
    file_starts = np.concatenate([[0], np.cumsum(sizes)])
    windows = -(-sample_bytes // WINDOW_BYTES)
    stratum = file_starts[-1] / windows
    jitter = RowRandom(derive_key(0, Stream.TOKENIZER_SAMPLE), np.arange(windows)).random()
    starts = (np.arange(windows) * stratum + jitter * max(stratum - WINDOW_BYTES, 0)).astype(np.int64)
    size = min(WINDOW_BYTES, int(np.ceil(stratum)))
    for start in starts:
        index = int(np.searchsorted(file_starts, start, side="right")) - 1
        yield to_path(identity[index]["path"]), int(start - file_starts[index]), size


def sample_documents(data: DataConfig, sample_bytes: int) -> Iterator[str]:
    """Documents of the corpus totalling about `sample_bytes` characters (all of a smaller corpus)."""
    identity = source_identity(data)
    size = total_bytes(identity)
    if size is None or size <= sample_bytes:
        taken = 0
        documents = itertools.chain.from_iterable(chunk.documents for chunk in read_chunks(data, WINDOW_BYTES))
        for document in documents:
            yield document
            taken += len(document)
            if taken >= sample_bytes:
                return
        return
    for path, offset, window in _file_windows(identity, sample_bytes):
        yield from _window_documents(path, offset, window, data.documents)
