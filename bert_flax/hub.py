"""Loading from the Hugging Face hub without hanging when there is no network."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import urlparse

from bert_flax.errors import UserError, first_line

T = TypeVar("T")


@functools.cache
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub endpoint answers a TCP connect (huggingface_hub itself retries for minutes)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def load_local_or_hub(name: str, load: Callable[..., T], what: str, fix: str) -> T:
    """`load(name)` from a local directory, the local HF cache, or the hub when it can be reached.

    `what` names the thing for the error ("tokenizer", "model"); `fix` says what to do offline.
    """
    if Path(name).expanduser().is_dir():
        try:
            return load(str(Path(name).expanduser()))
        except (OSError, ValueError, TypeError) as err:  # TypeError: a directory without vocab files
            reason = first_line(err)
            raise UserError(f"cannot load {what} from directory {name} ({reason}); {fix}") from None
    try:
        return load(name, local_files_only=True)
    except Exception:  # not cached: transformers raises OSError, ValueError or TypeError here
        pass
    if not hub_reachable():
        raise UserError(f"cannot load {what} {name!r}: not a local directory, not in the HF cache, and the hub is unreachable; {fix}")
    try:
        return load(name)
    except (OSError, ValueError) as err:
        reason = first_line(err)
        raise UserError(f"cannot load {what} {name!r} ({reason}); {fix}") from None
