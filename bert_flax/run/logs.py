"""Where a run's events go: metrics.jsonl, the source of truth, and the logs that mirror it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bert_flax.config import Config
from bert_flax.run.layout import RunDir
from bert_flax.run.metrics import MetricsLog, scalars
from bert_flax.run.tensorboard import TensorBoardLog
from bert_flax.run.wandb_log import WandbLog


class RunLog:
    """metrics.jsonl and, when `enabled` (the main process), the TensorBoard event file and W&B that
    `config.log` asks for, under `split/key` tags. A log that starts empty (TensorBoard always: its
    old files are replaced) first gets the events kept on resume, so it never holds a point that
    metrics.jsonl dropped."""

    def __init__(self, config: Config, run_dir: Path, start: int, enabled: bool) -> None:
        self.jsonl = MetricsLog(run_dir, start, enabled=enabled)
        self.elapsed_before = self.jsonl.elapsed_before  # a resumed run's clock continues
        self.sinks: list[WandbLog | TensorBoardLog] = []
        if enabled and config.log.wandb:
            self.sinks.append(WandbLog(config, run_dir))
        if enabled and config.log.tensorboard:
            self.sinks.append(TensorBoardLog(RunDir(run_dir).tensorboard))
        now = time.time()
        for record in self.jsonl.kept:  # their wall times: now, minus the training time since each
            ago = self.elapsed_before - float(record.get("elapsed_seconds", self.elapsed_before))
            for sink in self.sinks:
                if sink.fresh:
                    sink.log(record["step"], scalars(record), now - ago)

    def write(self, record: dict[str, Any]) -> None:
        self.jsonl.write(record)
        if self.sinks:
            values, now = scalars(record), time.time()
            for sink in self.sinks:
                sink.log(record["step"], values, now)

    def close(self, failed: bool = False) -> None:
        self.jsonl.close()
        for sink in self.sinks:
            sink.close(failed)
        self.sinks = []
