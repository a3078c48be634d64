"""Running a benchmark in another process: its JSON on stdout, or what went wrong in one line (the exit
status, a signal, a timeout, the last line of stderr). No JAX here."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from typing import Mapping, Sequence

STDERR_TAIL_LINES = 20
SIGNAL_HINTS = {signal.SIGKILL: "out of host memory?", signal.SIGSEGV: "a crash in native code"}


@dataclasses.dataclass(frozen=True)
class Finished:
    """A process that ran: its stdout, the end of its stderr, its wall time, and `error` (None when it exited 0)."""

    stdout: str
    stderr_tail: str
    seconds: float
    error: str | None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _failure(returncode: int, stderr: str) -> str:
    """One line: the signal that ended it, or its exit status with the last line of stderr."""
    if returncode < 0:
        sig = signal.Signals(-returncode)
        hint = SIGNAL_HINTS.get(sig)
        return f"killed by {sig.name}" + (f" ({hint})" if hint else "")
    last = _last_line(stderr)
    return f"exit {returncode}" + (f": {last}" if last else "")


def run_process(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> Finished:
    """Run `argv` to the end or for `timeout` seconds (then it and its children are killed)."""
    start = time.perf_counter()
    with subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=None if env is None else dict(env),
        start_new_session=True,  # its own process group: a timeout ends what it started too
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            error = None if process.returncode == 0 else _failure(process.returncode, stderr)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            error = f"timed out after {timeout:.0f} s (killed)"
    tail = "\n".join(stderr.splitlines()[-STDERR_TAIL_LINES:])
    return Finished(stdout, tail, time.perf_counter() - start, error)
