"""Reading a corpus into documents: local files (validated), a `datasets` source, or a manifest's
file: the copy shipped in the project's data/ (Meditations) or a pinned, sha256-verified download."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Sequence

from bert_flax.config import DataConfig
from bert_flax.disk import write_file
from bert_flax.errors import UserError

PROJECT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Documents of a corpus, in order; `sha256` identifies the content for caches."""

    documents: tuple[str, ...]
    source: str
    sha256: str


def cache_root(data: DataConfig) -> Path:
    """Where downloads and tokenized corpora are cached."""
    if data.cache_dir:
        return Path(data.cache_dir).expanduser()
    return Path(os.environ.get("BERT_FLAX_CACHE", Path.home() / ".cache" / "bert_flax")).expanduser()


def split_documents(text: str, mode: str) -> list[str]:
    """Documents of `text`: each non-empty line (`line`) or blank-line-separated blocks (`blank_line`)."""
    if mode == "line":
        pieces = text.splitlines()
    else:
        pieces = _BLANK_LINE.split(text.replace("\r\n", "\n"))
    return [" ".join(piece.split()) for piece in pieces if piece.strip()]


def read_text_file(path: Path) -> str:
    """The UTF-8 text of `path`, or a UserError saying why it is not a usable corpus file."""
    if not path.exists():
        raise UserError(f"corpus file {path} does not exist; pass an existing text file with data.path=FILE")
    if path.is_dir():
        raise UserError(f"corpus path {path} is a directory; pass text files or a glob, e.g. data.path='{path}/*.txt'")
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise UserError(f"corpus file {path} looks binary (it contains NUL bytes); pass a UTF-8 text file")
    try:
        text = raw.decode("utf-8-sig")  # a leading byte-order mark is not text
    except UnicodeDecodeError as err:
        raise UserError(
            f"corpus file {path} is not valid UTF-8 (byte offset {err.start}: {raw[err.start:err.start + 1]!r}); "
            "re-encode it as UTF-8"
        ) from None
    if not text.strip():
        raise UserError(f"corpus file {path} is empty or holds only whitespace; pass a file with text")
    return text


def resolve_paths(patterns: Sequence[str]) -> list[Path]:
    """Expand globs; a pattern with no match is an error (a plain path is checked by read_text_file)."""
    paths: list[Path] = []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            matches = sorted(glob.glob(expanded, recursive=True))
            if not matches:
                raise UserError(f"data.path glob {pattern!r} matches no file; check the pattern")
            paths.extend(Path(m) for m in matches)
        else:
            paths.append(Path(expanded))
    return paths


def _manifest_dir() -> Path:
    """The project's data/ directory ($BERT_FLAX_DATA_DIR overrides it): manifests and shipped corpora."""
    return Path(os.environ.get("BERT_FLAX_DATA_DIR", PROJECT_DATA_DIR))


def load_manifest(name: str) -> dict:
    """A dataset manifest from the project's data/ directory."""
    data_dir = _manifest_dir()
    path = data_dir / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in data_dir.glob("*.json"))
        raise UserError(
            f"no dataset manifest {name!r} in {data_dir} (known: {', '.join(known) or 'none'}); "
            "pass a local file with data.path=FILE"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(manifest: dict, dest_dir: Path, timeout_s: float = 30.0) -> Path:
    """The manifest's file in `dest_dir`, downloaded and sha256-verified unless already there."""
    dest = dest_dir / manifest["filename"]
    if dest.is_file() and _sha256_file(dest) == manifest["sha256"]:
        return dest
    offline_hint = f"offline? download it elsewhere and pass data.path=/path/to/{manifest['filename']}"

    def fetch(out: BinaryIO) -> None:
        """Stream the file into `out`, hashing it; a mismatch raises before `dest` is written."""
        digest = hashlib.sha256()
        with urllib.request.urlopen(manifest["url"], timeout=timeout_s) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != manifest["sha256"]:
            raise UserError(
                f"download of {manifest['name']} from {manifest['url']} has sha256 {digest.hexdigest()}, "
                f"expected {manifest['sha256']}; the file was discarded ({offline_hint})"
            )

    try:
        write_file(dest, fetch)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise UserError(f"cannot download {manifest['name']} from {manifest['url']} ({err}); {offline_hint}") from None
    return dest


def manifest_file(name: str, data: DataConfig) -> Path:
    """The file of manifest `name`: the copy beside the manifest when its sha256 matches (Meditations
    ships with the project), else the pinned download (fetched once, verified)."""
    manifest = load_manifest(name)
    shipped = _manifest_dir() / manifest["filename"]
    if shipped.is_file() and _sha256_file(shipped) == manifest["sha256"]:
        return shipped
    return download(manifest, _download_dir(data))


def _download_dir(data: DataConfig) -> Path:
    """data/downloads in a source checkout, else the cache."""
    if PROJECT_DATA_DIR.is_dir() and os.access(PROJECT_DATA_DIR, os.W_OK):
        return PROJECT_DATA_DIR / "downloads"
    return cache_root(data) / "downloads"


def _load_dataset_text(data: DataConfig) -> tuple[str, str]:
    """Rows of a `datasets` source joined by newlines, so both document modes apply to it."""
    import datasets  # heavy; only for this source

    data_files = [str(p) for p in resolve_paths(data.path)] or None
    try:
        dataset = datasets.load_dataset(
            data.dataset, data.dataset_config or None, split=data.dataset_split, data_files=data_files
        )
    except Exception as err:  # datasets raises many types (hub, network, builder)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot load dataset {data.dataset!r} ({reason}); check data.dataset or pass data.path=FILE") from None
    if data.text_column not in dataset.column_names:
        raise UserError(
            f"dataset {data.dataset!r} has no column {data.text_column!r}; "
            f"set data.text_column to one of {', '.join(dataset.column_names)}"
        )
    rows = ["" if row is None else str(row) for row in dataset[data.text_column]]
    return "\n".join(rows), f"datasets:{data.dataset}"


def load_corpus(data: DataConfig) -> Corpus:
    """The corpus the config names: `dataset`, else local `path`s, else the `corpus` manifest's file."""
    if data.dataset:
        text, source = _load_dataset_text(data)
        texts = [text]
    elif data.path:
        paths = resolve_paths(data.path)
        texts = [read_text_file(path) for path in paths]
        source = ", ".join(str(p) for p in paths)
    else:
        path = manifest_file(data.corpus, data)
        texts, source = [read_text_file(path)], f"{data.corpus} ({path})"
    documents = [doc for text in texts for doc in split_documents(text, data.documents)]
    if not documents:
        raise UserError(f"corpus {source} holds no documents; pass a file with text")
    digest = hashlib.sha256("\n\x00".join(documents).encode("utf-8")).hexdigest()
    return Corpus(documents=tuple(documents), source=source, sha256=digest)
