"""The prepared-dataset directory: token ids and offsets as memory-mappable .npy files, plus a manifest.

    manifest.json           format, sources (path, size, mtime), tokenizer fingerprint, counts, files
    tokens-00000.npy ...    uint16 (int32 for vocabularies over 65,536) token ids, sentences back to back
    sentence_starts.npy     int64 [S + 1]: token offset of every sentence (global, across token shards)
    document_starts.npy     int64 [D + 1]: sentence offset of every document

Files are written by appending, behind a fixed 128-byte .npy header that is filled in at the end,
so a prepare never holds more than one chunk in memory, and `np.load(mmap_mode="r")` opens any of
them in O(1). Opening checks every file's size against the manifest (a truncated copy is caught
without reading it); `verify` re-hashes the contents.

In a bucket (gs://) the same files are objects: `publish` uploads a local directory with the manifest
last (a reader that finds the manifest finds every file it names), `fetch` copies one into a local
directory, each file checked against its manifest sha256 before it is memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO, Any

import numpy as np
from tokenizers import Tokenizer

from bert_flax.data.token_corpus import ShardedTokens, TokenizedCorpus
from bert_flax.errors import UserError
from bert_flax.storage import AnyPath, GsPath, download, remove, upload_dir

FORMAT = "bert_flax.prepared"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_HEADER_BYTES = 128
_HASH_BLOCK = 1 << 24


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """sha256 of the tokenizer's full state, minus truncation and padding (transformers rewrites
    them on every call; preparing neither truncates nor pads)."""
    state = json.loads(tokenizer.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else int32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.int32)


def _npy_header(dtype: np.dtype, count: int) -> bytes:
    """A version 1.0 .npy header for a 1-D array, padded to exactly _HEADER_BYTES."""
    text = f"{{'descr': '{dtype.str}', 'fortran_order': False, 'shape': ({count},), }}"
    body = text.encode("latin1").ljust(_HEADER_BYTES - 10 - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + (len(body)).to_bytes(2, "little") + body


class ArrayWriter:
    """Appends to one 1-D .npy file; the header (which holds the length) is written by `close`."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path, self.dtype, self.count = path, np.dtype(dtype), 0
        self._digest = hashlib.sha256()
        self._file: IO[bytes] = path.open("xb")
        self._file.write(b"\0" * _HEADER_BYTES)

    def append(self, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype).tobytes()
        self._file.write(data)
        self._digest.update(data)
        self.count += len(values)

    def close(self) -> dict[str, Any]:
        """Finish the file; its manifest entry (name, length, sha256 of the data)."""
        self._file.seek(0)
        self._file.write(_npy_header(self.dtype, self.count))
        self._file.close()
        return {"file": self.path.name, "count": self.count, "sha256": self._digest.hexdigest()}


class PreparedWriter:
    """Appends tokenized chunks (local offsets) to a prepared directory, cutting token shards by size."""

    def __init__(self, directory: Path, dtype: np.dtype, shard_tokens: int) -> None:
        self.directory, self.dtype, self.shard_tokens = directory, np.dtype(dtype), shard_tokens
        self.num_tokens = self.num_sentences = self.num_documents = 0
        self._shards: list[dict[str, Any]] = []
        self._tokens = self._new_shard()
        self._sentences = ArrayWriter(directory / "sentence_starts.npy", np.int64)
        self._documents = ArrayWriter(directory / "document_starts.npy", np.int64)
        self._sentences.append(np.zeros(1))
        self._documents.append(np.zeros(1))

    def _new_shard(self) -> ArrayWriter:
        return ArrayWriter(self.directory / f"tokens-{len(self._shards):05d}.npy", self.dtype)

    def add(self, chunk: TokenizedCorpus) -> None:
        tokens = np.asarray(chunk.token_ids)
        while len(tokens):
            room = self.shard_tokens - self._tokens.count
            if room == 0:
                self._shards.append(self._tokens.close())
                self._tokens = self._new_shard()
                continue
            self._tokens.append(tokens[:room])
            tokens = tokens[room:]
        self._sentences.append(chunk.sentence_starts[1:] + self.num_tokens)
        self._documents.append(chunk.document_starts[1:] + self.num_sentences)
        self.num_tokens += int(chunk.sentence_starts[-1])
        self.num_sentences += len(chunk.sentence_starts) - 1
        self.num_documents += chunk.num_documents

    def finish(self) -> dict[str, Any]:
        """Close every file: the manifest's `counts` and `files`."""
        self._shards.append(self._tokens.close())
        return {
            "counts": {"documents": self.num_documents, "sentences": self.num_sentences, "tokens": self.num_tokens},
            "files": {
                "tokens": self._shards,
                "sentence_starts": self._sentences.close(),
                "document_starts": self._documents.close(),
            },
        }


def read_manifest(directory: AnyPath) -> dict[str, Any]:
    """The manifest of a prepared directory, or a UserError saying why there is none usable."""
    path = directory / MANIFEST
    if not path.is_file():
        raise UserError(f"{directory} is not a prepared dataset (no {MANIFEST}); create it with bert-flax prepare")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is unreadable ({err}); delete {directory} and rerun bert-flax prepare") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise UserError(
            f"{directory} holds prepared data of format {manifest.get('format')!r} version {manifest.get('version')!r}; "
            f"this bert_flax reads {FORMAT!r} version {FORMAT_VERSION}: rerun bert-flax prepare --force"
        )
    return manifest


def _damaged(directory: AnyPath, what: str) -> UserError:
    return UserError(
        f"prepared dataset {directory} is damaged: {what}; rerun bert-flax prepare --force "
        "(it rebuilds the directory from the sources)"
    )


def _open_array(directory: Path, entry: dict[str, Any]) -> np.ndarray:
    path = directory / entry["file"]
    if not path.is_file():
        raise _damaged(directory, f"{entry['file']} is missing")
    size = path.stat().st_size
    try:  # the header alone: mapping a truncated file fails without saying by how much
        with path.open("rb") as f:
            np.lib.format.read_magic(f)
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    except (ValueError, EOFError) as err:  # not a .npy file, or cut inside its header
        raise _damaged(directory, f"{entry['file']} has {size} bytes and no valid .npy header ({err})") from None
    expected = _HEADER_BYTES + entry["count"] * dtype.itemsize
    if shape != (entry["count"],) or size != expected:
        raise _damaged(
            directory, f"{entry['file']} has {size} bytes, the manifest says {entry['count']} values ({expected} bytes)"
        )
    return np.load(path, mmap_mode="r", allow_pickle=False)


def open_prepared(directory: Path) -> tuple[TokenizedCorpus, dict[str, Any]]:
    """The memory-mapped corpus of a prepared directory and its manifest; sizes are checked, nothing is read."""
    manifest = read_manifest(directory)
    files = manifest["files"]
    shards = [_open_array(directory, entry) for entry in files["tokens"]]
    sentence_starts = _open_array(directory, files["sentence_starts"])
    document_starts = _open_array(directory, files["document_starts"])
    counts = manifest["counts"]
    if (
        int(sentence_starts[-1]) != counts["tokens"]
        or sum(len(s) for s in shards) != counts["tokens"]
        or int(document_starts[-1]) != counts["sentences"]
    ):
        raise _damaged(directory, "its offsets do not match its token count")
    return TokenizedCorpus(ShardedTokens(shards), sentence_starts, document_starts), manifest


def _data_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    files = manifest["files"]
    return [*files["tokens"], files["sentence_starts"], files["document_starts"]]


def _data_sha256(path: Path) -> str:
    """sha256 of a file's values (after its .npy header), as ArrayWriter hashed them."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(_HEADER_BYTES)
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(directory: Path) -> None:
    """Re-hash every file against the manifest (reads the whole directory)."""
    _, manifest = open_prepared(directory)
    for entry in _data_files(manifest):
        if _data_sha256(directory / entry["file"]) != entry["sha256"]:
            raise _damaged(directory, f"{entry['file']} does not match the sha256 in its manifest")


def publish(directory: Path, target: GsPath) -> None:
    """Upload a prepared directory into `target`, replacing what is there: its old manifest deleted first
    (until the new one is up, nothing there reads as a prepared dataset), the new manifest last."""
    remove(target / MANIFEST)
    upload_dir(directory, target, last=(MANIFEST,))


def fetch(source: GsPath, manifest_text: str, directory: Path) -> None:
    """Fill the empty `directory` with the prepared dataset at `source` whose manifest is `manifest_text`:
    every file downloaded and checked (size, sha256) against it, the manifest written last."""
    manifest = json.loads(manifest_text)
    for entry in _data_files(manifest):
        if not (source / entry["file"]).is_file():
            raise _damaged(source, f"{entry['file']} is missing")
        local = download(source / entry["file"], directory / entry["file"])
        if local.stat().st_size < _HEADER_BYTES or _data_sha256(local) != entry["sha256"]:
            raise _damaged(source, f"{entry['file']} does not match the sha256 in its manifest")
    (directory / MANIFEST).write_text(manifest_text, encoding="utf-8")
