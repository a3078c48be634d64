"""Where a run's events go: metrics.jsonl, the source of truth, and the logs that mirror it."""

from __future__ import annotations

import functools
import time
from typing import Any

from bert_flax.config import Config
from bert_flax.run.layout import RunDir
from bert_flax.run.metrics import MetricsLog, scalars
from bert_flax.run.tensorboard import TensorBoardLog
from bert_flax.run.wandb_log import WandbLog
from bert_flax.storage import AnyPath, failures_stop_the_run, is_remote

# A gs:// run dir's metrics.jsonl and event file are uploaded at every checkpoint, at the end, and at a
# log point when this long has passed since the last upload (GCS takes about one write per second per object).
PUBLISH_EVERY_S = 60.0


class RunLog:
    """metrics.jsonl and, when `enabled` (the main process), the TensorBoard event file and W&B that
    `config.log` asks for, under `split/key` tags. A log that starts empty (TensorBoard always: its
    old files are replaced) first gets the events kept on resume, so it never holds a point that
    metrics.jsonl dropped. In a gs:// run dir, `publish` uploads metrics.jsonl and the event file."""

    def __init__(self, config: Config, run_dir: AnyPath, start: int, enabled: bool) -> None:
        self.run_dir = RunDir(run_dir).path
        with failures_stop_the_run(self.run_dir, "reading the metrics of"):
            self.jsonl = MetricsLog(run_dir, start, enabled=enabled)
        self.elapsed_before = self.jsonl.elapsed_before  # a resumed run's clock continues
        self.sinks: list[WandbLog | TensorBoardLog] = []
        if enabled and config.log.wandb:
            self.sinks.append(WandbLog(config, self.run_dir))
        if enabled and config.log.tensorboard:
            self.sinks.append(TensorBoardLog(RunDir(run_dir).tensorboard))
        now = time.time()
        for record in self.jsonl.kept:  # their wall times: now, minus the training time since each
            ago = self.elapsed_before - float(record.get("elapsed_seconds", self.elapsed_before))
            for sink in self.sinks:
                if sink.fresh:
                    sink.log(record["step"], scalars(record), now - ago)
        self.published = time.monotonic()

    def write(self, record: dict[str, Any]) -> None:
        self.jsonl.write(record)
        if self.sinks:
            values, now = scalars(record), time.time()
            for sink in self.sinks:
                sink.log(record["step"], values, now)
        if is_remote(self.run_dir) and time.monotonic() - self.published >= PUBLISH_EVERY_S:
            self.publish()

    def publish(self) -> None:
        """Upload what a gs:// run dir's logs hold so far (nothing to do for a local one)."""
        with failures_stop_the_run(self.run_dir, "uploading the metrics to"):
            self.jsonl.publish()
            for sink in self.sinks:
                if isinstance(sink, TensorBoardLog):
                    sink.publish()
        self.published = time.monotonic()

    def close(self, failed: bool = False) -> None:
        """Close every log (uploading a gs:// run dir's last events); after a failure, an upload that
        fails too is let go: the events up to the last checkpoint went up with it."""
        closers = [self.jsonl.close, *(functools.partial(sink.close, failed) for sink in self.sinks)]
        self.sinks = []
        error = None
        for close in closers:  # every one, whatever the others do
            try:
                with failures_stop_the_run(self.run_dir, "uploading the metrics to"):
                    close()
            except Exception as err:
                error = error or err
        if error is not None and not failed:
            raise error
