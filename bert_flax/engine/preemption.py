"""Stop requests (SIGTERM from a preempting scheduler, Ctrl-C): finish the step, checkpoint, exit.

One process: while a `StopSignals` block is active on the main thread, SIGTERM and SIGINT only
record the request (a second Ctrl-C interrupts at once). Several processes: JAX's preemption
service (started by `jax.distributed.initialize`) catches SIGTERM and makes every process agree
on the step to stop at, so they all save the same checkpoint; Ctrl-C keeps its default there
(processes that stopped at different steps would wait for each other forever).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import jax

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """`requested(step)`: the name of the signal to stop for at `step`, or None to go on."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the checkpoint
        self.received = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:  # Python installs handlers on the main thread only
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def requested(self, step: int) -> str | None:
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            if multihost_utils.reached_preemption_sync_point(step):
                return "SIGTERM"
        return self.received
