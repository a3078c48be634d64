"""Streaming a corpus as chunks of documents, in bounded memory.

Files are read in blocks of about `chunk_bytes`, cut where a document ends (a newline, or a blank
line), and decoded strictly, so an undecodable byte is reported with its file and byte offset.
A `datasets` source (streaming or not) is read in row batches; with `documents=row` every row is
one document (a Wikipedia article), else every row is split into documents on its own, so
documents never run across rows.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator

from bert_flax.config import DataConfig
from bert_flax.data.corpus import resolve_paths, source_files
from bert_flax.data.documents import last_document_end, split_documents, strip_bom
from bert_flax.errors import UserError, first_line
from bert_flax.storage import AnyPath

_DATASET_BATCH_ROWS = 256


@dataclasses.dataclass(frozen=True)
class TextChunk:
    """Consecutive documents of one source, and how many input bytes they came from."""

    documents: list[str]
    num_bytes: int


def source_identity(data: DataConfig) -> list[dict[str, Any]]:
    """What the corpus is, without reading it: each file's path, size and mtime (a gs:// object's: the
    same from every machine), or the dataset's name."""
    if data.dataset:
        files = [_file_identity(p) for p in resolve_paths(data.path)] if data.path else []
        return [{
            "dataset": data.dataset, "config": data.dataset_config, "split": data.dataset_split,
            "column": data.text_column, "streaming": data.streaming, "data_files": files,
        }]
    return [_file_identity(path) for path in source_files(data)]


def _file_identity(path: AnyPath) -> dict[str, Any]:
    _check_file(path)
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def describe(data: DataConfig) -> str:
    """The corpus for messages: the dataset, the paths, or the manifest's name."""
    if data.dataset:
        return f"datasets:{data.dataset}"
    return ", ".join(data.path) if data.path else data.corpus


def total_bytes(identity: list[dict[str, Any]]) -> int | None:
    """Input bytes of a file corpus (None for a `datasets` source)."""
    if any("dataset" in source for source in identity):
        return None
    return sum(source["bytes"] for source in identity)


def _check_file(path: AnyPath) -> None:
    if not path.exists():
        raise UserError(f"corpus file {path} does not exist; pass an existing text file with data.path=FILE")
    if path.is_dir():
        raise UserError(f"corpus path {path} is a directory; pass text files or a glob, e.g. data.path='{path}/*.txt'")


def decode_utf8(raw: bytes, path: AnyPath, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        position = offset + err.start
        raise UserError(
            f"corpus file {path} is not valid UTF-8 (byte offset {position}: {raw[err.start:err.start + 1]!r}); "
            "re-encode it as UTF-8"
        ) from None


def read_file_chunks(path: AnyPath, mode: str, chunk_bytes: int) -> Iterator[TextChunk]:
    """The documents of one text file, about `chunk_bytes` of input at a time."""
    _check_file(path)
    any_text = False
    with path.open("rb") as f:
        buffer, offset = f.read(chunk_bytes), 0
        if b"\x00" in buffer[:65536]:
            raise UserError(f"corpus file {path} looks binary (it contains NUL bytes); pass a UTF-8 text file")
        buffer, offset = strip_bom(buffer)
        at_end = False
        while True:
            if not at_end:
                block = f.read(chunk_bytes)
                at_end, buffer = not block, buffer + block
            cut = len(buffer) if at_end else last_document_end(buffer, mode)
            if cut == 0:
                if at_end:
                    break
                continue  # no document ends in the buffer yet: read on
            piece, buffer = buffer[:cut], buffer[cut:]
            documents = split_documents(decode_utf8(piece, path, offset), mode)
            any_text = any_text or bool(documents)
            yield TextChunk(documents, len(piece))
            offset += cut
            if at_end:
                break
    if not any_text:
        raise UserError(f"corpus file {path} is empty or holds only whitespace; pass a file with text")


def _load_dataset(data: DataConfig) -> Any:
    import datasets  # heavy; only for this source

    data_files = [str(p) for p in resolve_paths(data.path)] or None
    try:
        return datasets.load_dataset(
            data.dataset, data.dataset_config or None, split=data.dataset_split, data_files=data_files,
            streaming=data.streaming,
        )
    except Exception as err:  # datasets raises many types (hub, network, builder)
        reason = first_line(err)
        raise UserError(f"cannot load dataset {data.dataset!r} ({reason}); check data.dataset or pass data.path=FILE") from None


def read_dataset_chunks(data: DataConfig, chunk_bytes: int) -> Iterator[TextChunk]:
    """The documents of a `datasets` source, rows read in batches."""
    dataset = _load_dataset(data)
    documents: list[str] = []
    size = 0
    for batch in dataset.iter(batch_size=_DATASET_BATCH_ROWS):
        if data.text_column not in batch:
            raise UserError(
                f"dataset {data.dataset!r} has no column {data.text_column!r}; "
                f"set data.text_column to one of {', '.join(batch)}"
            )
        for row in batch[data.text_column]:
            text = "" if row is None else str(row)
            size += len(text)
            if data.documents == "row":
                document = " ".join(text.split())
                documents.extend([document] if document else [])
            else:
                documents.extend(split_documents(text, data.documents))
        if size >= chunk_bytes:
            yield TextChunk(documents, size)
            documents, size = [], 0
    yield TextChunk(documents, size)


def read_chunks(data: DataConfig, chunk_bytes: int) -> Iterator[TextChunk]:
    """Every document of the corpus the config names, in order, in chunks of about `chunk_bytes`."""
    if data.dataset:
        yield from read_dataset_chunks(data, chunk_bytes)
        return
    for path in source_files(data):
        yield from read_file_chunks(path, data.documents, chunk_bytes)


def default_workers() -> int:
    """Worker processes for preparing: the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
