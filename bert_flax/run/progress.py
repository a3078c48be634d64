"""Progress on stderr: a one-line bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from bert_flax.formats import format_duration


class Progress:
    """`update` at every metrics read; on a terminal it redraws one line, elsewhere it prints a line once
    `every` steps have passed since the last one."""

    def __init__(self, total_steps: int, start_step: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.start = total_steps, start_step
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.every = max(1, total_steps // 20)
        self.last_printed = start_step
        self.t0 = time.perf_counter()

    def _eta(self, step: int) -> str:
        done = step - self.start
        if done <= 0:
            return "?"
        return format_duration((time.perf_counter() - self.t0) / done * (self.total - step))

    def update(self, step: int, loss: float, tokens_per_second: float) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * step / self.total)
        text = f"step {step}/{self.total} loss {loss:.4f} {tokens_per_second:,.0f} tok/s eta {self._eta(step)}"
        if self.tty:
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\x1b[K")
            self.stream.flush()
        elif step - self.last_printed >= self.every or step == self.total:
            self.last_printed = step
            print(text, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        """A line of its own (eval results, checkpoints), not overwritten by the bar."""
        if self.enabled:
            print(("\r\x1b[K" if self.tty else "") + text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
