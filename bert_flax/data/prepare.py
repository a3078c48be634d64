"""`bert-flax prepare`: stream a corpus through sentence splitting and tokenization into a prepared
(memory-mapped) directory, on all cores, in memory bounded by the chunk size.

Chunks of documents go to worker processes (spawned: the parent may already hold JAX's threads)
at most two per worker ahead of the writer, and come back in order, so the output does not depend
on the number of workers. The directory is built beside its final name and renamed into place, so
an interrupted prepare leaves nothing that looks complete, and a rerun starts clean.

`data.prepared_dir=gs://…` names a prepared dataset in a bucket: built locally (into the cache), then
published there, manifest last. A run given it, on any machine, copies it once into its local cache
(each file checked against the manifest's sha256) and memory-maps the copy, instead of tokenizing the
corpus again; the copy is used while its manifest is the bucket's.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import errno
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tokenizers import Tokenizer

from bert_flax.config import DataConfig
from bert_flax.data.corpus import cache_root
from bert_flax.data.prepared_files import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PreparedWriter,
    fetch,
    open_prepared,
    publish,
    read_manifest,
    token_dtype,
    tokenizer_fingerprint,
)
from bert_flax.data.reader import TextChunk, default_workers, describe, read_chunks, source_identity, total_bytes
from bert_flax.data.token_corpus import TokenizedCorpus, encode_documents, plain_tokenizer
from bert_flax.disk import check_writable_dir, write_dir
from bert_flax.errors import UserError
from bert_flax.formats import format_duration
from bert_flax.storage import AnyPath, GsPath, check_bucket, to_path

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_SHARD_TOKENS = 1 << 28  # 512 MiB of uint16 per token file


@dataclasses.dataclass(frozen=True)
class Prepared:
    """An opened prepared dataset."""

    directory: Path  # the memory-mapped files
    tokenized: TokenizedCorpus
    manifest: dict[str, Any]
    built: bool  # prepared by this call (False: it was there already)
    location: AnyPath  # where it is kept: `directory`, or the gs:// prefix `directory` is a copy of


# --- worker side -------------------------------------------------------------------------------

_worker_tokenizer: Tokenizer | None = None
_worker_dtype: np.dtype | None = None


def _start_worker(plain_tokenizer_json: str, dtype: str) -> None:
    global _worker_tokenizer, _worker_dtype
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker
    _worker_tokenizer, _worker_dtype = Tokenizer.from_str(plain_tokenizer_json), np.dtype(dtype)


def _encode_in_worker(documents: list[str]) -> TokenizedCorpus:
    assert _worker_tokenizer is not None and _worker_dtype is not None
    return encode_documents(documents, _worker_tokenizer, _worker_dtype)


# --- parent side -------------------------------------------------------------------------------


class _Progress:
    """Bytes, documents, tokens/s and an ETA on stderr, at most every few seconds."""

    def __init__(self, total: int | None, enabled: bool, every_s: float = 5.0) -> None:
        self.total, self.enabled, self.every_s = total, enabled, every_s
        self.bytes = self.documents = self.tokens = 0
        self.t0 = self.last = time.perf_counter()
        self.printed = False

    def add(self, num_bytes: int, chunk: TokenizedCorpus) -> None:
        self.bytes += num_bytes
        self.documents += chunk.num_documents
        self.tokens += int(chunk.sentence_starts[-1])
        self._show(final=False)

    def finish(self) -> None:
        self._show(final=True)

    def _show(self, final: bool) -> None:
        now = time.perf_counter()
        # A prepare done within the first interval prints nothing (the caller reports the result).
        if self.enabled and (now - self.last >= self.every_s or (final and self.printed)):
            self.last, self.printed = now, True
            print(f"prepare: {self.line(now)}", file=sys.stderr, flush=True)

    def line(self, now: float) -> str:
        elapsed = max(now - self.t0, 1e-9)
        done = f"{self.bytes / 1e6:,.1f}"
        if self.total:
            done += f"/{self.total / 1e6:,.1f} MB ({100 * self.bytes / self.total:.0f}%)"
            eta = (self.total - self.bytes) / max(self.bytes / elapsed, 1e-9)
            tail = f", ETA {format_duration(eta)}"
        else:
            done, tail = done + " MB", ""
        rate = f"{self.bytes / elapsed / 1e6:.1f} MB/s, {self.tokens / elapsed:,.0f} tokens/s"
        return f"{done}, {self.documents:,} documents, {self.tokens:,} tokens, {rate}{tail}"


def _encoded_chunks(
    chunks: Iterator[TextChunk], tokenizer: Tokenizer, dtype: np.dtype, workers: int
) -> Iterator[tuple[int, TokenizedCorpus]]:
    """(input bytes, tokenized chunk) in input order; at most 2 × workers chunks in flight."""
    plain = plain_tokenizer(tokenizer)
    if workers <= 1:
        for chunk in chunks:
            yield chunk.num_bytes, encode_documents(chunk.documents, plain, dtype)
        return
    context = multiprocessing.get_context("spawn")
    init_args = (plain.to_str(), dtype.str)
    with concurrent.futures.ProcessPoolExecutor(workers, context, _start_worker, init_args) as pool:
        pending: collections.deque = collections.deque()
        for chunk in chunks:
            pending.append((chunk.num_bytes, pool.submit(_encode_in_worker, chunk.documents)))
            if len(pending) >= 2 * workers:
                num_bytes, future = pending.popleft()
                yield num_bytes, future.result()
        while pending:
            num_bytes, future = pending.popleft()
            yield num_bytes, future.result()


def _location(data: DataConfig, identity: list[dict[str, Any]], fingerprint: str) -> AnyPath:
    """`data.prepared_dir`, else a cache directory named by everything the content depends on."""
    if data.prepared_dir:
        return to_path(data.prepared_dir).expanduser()
    key = json.dumps([FORMAT_VERSION, identity, data.documents, fingerprint], sort_keys=True)
    return cache_root(data) / "prepared" / hashlib.sha256(key.encode()).hexdigest()[:20]


def _check_matches(
    directory: AnyPath, manifest: dict[str, Any], identity: list[dict[str, Any]], fingerprint: str, data: DataConfig, tokenizer_name: str
) -> None:
    """A prepared directory made from other sources, documents or tokenizer is refused, saying what differs."""
    rerun = f"rerun bert-flax prepare --force with this config to rebuild {directory}"
    if manifest["documents"] != data.documents:
        raise UserError(f"prepared dataset {directory} splits documents by {manifest['documents']!r}, the config by {data.documents!r}; {rerun}")
    before = {s.get("path", s.get("dataset")): s for s in manifest["sources"]}
    for source in identity:
        name = source.get("path", source.get("dataset"))
        if name not in before:
            raise UserError(f"prepared dataset {directory} was not made from {name}; {rerun}, or point data.prepared_dir elsewhere")
        if before[name] != source:
            raise UserError(
                f"corpus source {name} changed since it was prepared into {directory} "
                f"(size/mtime {before[name].get('bytes')}/{before[name].get('mtime_ns')} → {source.get('bytes')}/{source.get('mtime_ns')}); {rerun}"
            )
    if len(identity) != len(manifest["sources"]):
        raise UserError(f"prepared dataset {directory} was made from other sources than the config's; {rerun}")
    # Sources first: a changed corpus also changes a tokenizer trained on it, and is the cause to report.
    if manifest["tokenizer_sha256"] != fingerprint:
        raise UserError(
            f"prepared dataset {directory} was made with tokenizer {manifest.get('tokenizer')!r}, not with this config's "
            f"{tokenizer_name!r} (their vocabularies or settings differ); {rerun}, or set tokenizer.name to the tokenizer it was made with"
        )


def _clear_leftovers(location: Path) -> None:
    """Remove temporary siblings that an interrupted prepare (a dead process) left behind."""
    for leftover in location.parent.glob(f".{location.name}.tmp-*"):
        pid = leftover.name.split("-")[-2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(leftover, ignore_errors=True)


class _PreparedMeanwhile(Exception):
    """Another process published the same prepared directory while this one was building it."""


def _build(
    location: Path, data: DataConfig, tokenizer: Tokenizer, identity: list[dict[str, Any]], name: str, fingerprint: str,
    progress: bool, rebuild: bool = False,
) -> None:
    """Prepare the corpus into a temporary sibling of `location`, then rename it into place."""
    dtype = token_dtype(tokenizer.get_vocab_size(with_added_tokens=True))
    workers = data.prepare_workers or default_workers()
    size = total_bytes(identity)
    if size is not None and size <= 2 * data.prepare_chunk_bytes:
        workers = 1  # a small corpus: starting workers costs more than it saves

    def fill(directory: Path) -> None:
        writer = PreparedWriter(directory, dtype, _SHARD_TOKENS)
        report = _Progress(size, progress)
        for num_bytes, chunk in _encoded_chunks(read_chunks(data, data.prepare_chunk_bytes), tokenizer, dtype, workers):
            writer.add(chunk)
            report.add(num_bytes, chunk)
        report.finish()
        if writer.num_documents == 0:
            raise UserError(f"corpus {describe(data)} holds no documents; pass a source with text")
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "sources": identity, "documents": data.documents,
            "tokenizer": name, "tokenizer_sha256": fingerprint, "token_dtype": dtype.name,
            **writer.finish(),
        }
        if not rebuild and (location / MANIFEST).is_file():  # rebuild: the old one is what is being replaced
            raise _PreparedMeanwhile
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")

    created = [p for p in (location.parent, *location.parent.parents) if not p.exists()]
    try:
        write_dir(location, fill)
    except _PreparedMeanwhile:
        pass
    except BaseException as err:
        for parent in created:  # the failed prepare leaves no trace, not even its cache directories
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
        if not isinstance(err, OSError) or err.errno not in _DISK_FULL:
            raise
        raise UserError(
            f"disk full while preparing {location} ({os.strerror(err.errno)}); nothing was published: "
            "free space, or set data.prepared_dir to a directory on a larger disk"
        ) from None


def ensure_prepared(data: DataConfig, tokenizer: Tokenizer, tokenizer_name: str, progress: bool = True, rebuild: bool = False) -> Prepared:
    """The prepared dataset of `data` tokenized by `tokenizer`: opened if it is there and matches,
    else built first (`rebuild`: built again in any case)."""
    identity = source_identity(data)
    fingerprint = tokenizer_fingerprint(tokenizer)
    location = _location(data, identity, fingerprint)
    if isinstance(location, GsPath):
        return _ensure_published(location, data, tokenizer, identity, tokenizer_name, fingerprint, progress, rebuild)
    built = False
    if rebuild or not (location / MANIFEST).is_file():
        _check_parent(location)
        _clear_leftovers(location)
        _build(location, data, tokenizer, identity, tokenizer_name, fingerprint, progress, rebuild)
        built = True
    _check_matches(location, read_manifest(location), identity, fingerprint, data, tokenizer_name)
    tokenized, manifest = open_prepared(location)
    return Prepared(location, tokenized, manifest, built, location)


def _check_parent(directory: Path) -> None:
    fix = "point data.prepared_dir (or $BERT_FLAX_CACHE) at a writable directory"
    check_writable_dir(directory.parent, "data.prepared_dir's parent", fix)


def _ensure_published(
    remote: GsPath, data: DataConfig, tokenizer: Tokenizer, identity: list[dict[str, Any]], name: str, fingerprint: str,
    progress: bool, rebuild: bool,
) -> Prepared:
    """`ensure_prepared` for a gs:// prepared_dir: the local copy in the cache, built and published when the
    bucket has none (or `rebuild`), else fetched when it is missing or not the bucket's current one."""
    check_bucket(remote, "data.prepared_dir", "point data.prepared_dir at a bucket you can write to")
    copy = cache_root(data) / "prepared" / "gs" / hashlib.sha256(str(remote).encode()).hexdigest()[:20]
    _check_parent(copy)
    _clear_leftovers(copy)
    built = rebuild or not (remote / MANIFEST).is_file()
    if built:  # from this config: it matches
        _build(copy, data, tokenizer, identity, name, fingerprint, progress, rebuild=True)
        publish(copy, remote)
    else:
        manifest_text = (remote / MANIFEST).read_text(encoding="utf-8")
        _check_matches(remote, read_manifest(remote), identity, fingerprint, data, name)  # before copying anything
        if not (copy / MANIFEST).is_file() or (copy / MANIFEST).read_text(encoding="utf-8") != manifest_text:
            write_dir(copy, lambda directory: fetch(remote, manifest_text, directory))
    tokenized, manifest = open_prepared(copy)
    return Prepared(copy, tokenized, manifest, built, remote)
