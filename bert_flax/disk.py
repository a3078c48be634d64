"""Files and directories on disk: checked before a run writes anything, then written atomically.

A permission error half-way through a run (after minutes of data preparation, or between two
checkpoints) is a worse failure than refusing to start, so callers check their output
directories up front and get one clear UserError.

`write_file` and `write_dir` are the one way this project writes an output that must never be
seen half written (configs, metrics rewritten on resume, reports, caches, exports, final/ and
best/): into a temporary sibling, then renamed into place. Both create with the process' umask,
as `open` and `mkdir` do (unlike `tempfile.mkstemp`/`mkdtemp`, which make private 0600/0700
entries), so a TensorBoard server or a teammate on a shared machine can read what a run wrote.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, TypeVar

from bert_flax.errors import UserError

T = TypeVar("T")


def nearest_existing(path: Path) -> Path:
    """`path` itself if it exists (a dangling symlink counts), else its closest existing parent."""
    while not (path.exists() or path.is_symlink()) and path != path.parent:
        path = path.parent
    return path


def check_writable_dir(path: Path, what: str, fix: str) -> None:
    """A UserError unless `path` is a writable directory or could be created as one.

    `what` names the directory in the message ("run dir"); `fix` ends it ("pass another --run-dir").
    """
    existing = nearest_existing(Path(path))
    where = f"{what} {path}" if existing == Path(path) else f"{what} {path} cannot be created:"
    subject = "" if existing == Path(path) else f" {existing}"
    if not existing.is_dir():
        raise UserError(f"{where}{subject} exists and is not a directory; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{where}{subject} is not writable (check its permissions); {fix}")


def _sibling(path: Path, tag: str) -> Path:
    """A fresh hidden name beside `path` (same directory, so a rename never crosses file systems)."""
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_file(path: Path, content: str | bytes | Callable[[BinaryIO], object]) -> Path:
    """Write `content` (text as UTF-8, bytes, or a function writing to the open binary file) to
    `path` atomically: readers see the old file or the whole new one. Parents are created.
    If `content` raises, `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    try:
        with tmp.open("xb") as f:  # mode 0666 & ~umask
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_dir(path: Path, fill: Callable[[Path], T]) -> T:
    """Build a directory with `fill(tmp)` in a temporary sibling, then put it at `path`, replacing
    any directory there; returns what `fill` returned. If `fill` raises, `path` is left as it was.
    The old directory is renamed aside before the new one is renamed in, so a crash between the two
    leaves it recoverable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    tmp.mkdir()  # mode 0777 & ~umask
    try:
        filled = fill(tmp)
        old = _sibling(path, "old") if path.exists() else None
        if old is not None:
            path.rename(old)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return filled
