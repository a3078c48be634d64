"""Where a corpus comes from: local or gs:// files and globs, or a manifest's file (the copy shipped in the
project's data/, as Meditations is, or a pinned, sha256-verified download). `data/reader.py` streams
them, split into documents by `data/documents.py`."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Sequence

from bert_flax.config import DataConfig
from bert_flax.disk import write_file
from bert_flax.errors import UserError
from bert_flax.storage import AnyPath, glob_paths, is_remote, to_path

PROJECT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"


def cache_root(data: DataConfig) -> Path:
    """Where downloads and tokenized corpora are cached."""
    if data.cache_dir:
        return Path(data.cache_dir).expanduser()
    return Path(os.environ.get("BERT_FLAX_CACHE", Path.home() / ".cache" / "bert_flax")).expanduser()


def resolve_paths(patterns: Sequence[str]) -> list[AnyPath]:
    """Expand globs, local or gs://; a pattern with no match is an error (a plain path is checked by
    read_text_file)."""
    paths: list[AnyPath] = []
    for pattern in patterns:
        expanded = pattern if is_remote(pattern) else os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            matches = glob_paths(expanded)
            if not matches:
                raise UserError(f"data.path glob {pattern!r} matches no file; check the pattern")
            paths.extend(matches)
        else:
            paths.append(to_path(expanded))
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


def source_files(data: DataConfig) -> list[AnyPath]:
    """The text files of a file corpus: `path` (globs expanded), else the `corpus` manifest's file."""
    if data.path:
        return resolve_paths(data.path)
    return [manifest_file(data.corpus, data)]
