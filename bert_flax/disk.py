"""Checking, before anything is written, that a directory can be created and written to.

A permission error half-way through a run (after minutes of data preparation, or between two
checkpoints) is a worse failure than refusing to start, so callers check their output
directories up front and get one clear UserError.
"""

from __future__ import annotations

import os
from pathlib import Path

from bert_flax.errors import UserError


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
