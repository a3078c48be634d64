"""metrics.jsonl, the source of truth of a run's events: written by `MetricsLog`, read by `read_metrics`.

One JSON object per line: step, split ("train", "eval"), and the numbers of that event. NaN and
Inf, which JSON cannot spell, are written as the strings "nan", "inf", "-inf".

In a gs:// run dir (an object cannot be appended to) the log is a local working copy, started from the
bucket's metrics.jsonl and uploaded whole by `publish` (at every checkpoint and at the end).
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from bert_flax.disk import write_file
from bert_flax.formats import json_number, read_number
from bert_flax.run.layout import RunDir
from bert_flax.storage import AnyPath, WorkingCopy


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A metrics record's numbers tagged `split/key` (TensorBoard, W&B): all but step and elapsed_seconds."""
    split = record.get("split", "train")
    values = {}
    for key, value in record.items():
        number = read_number(value)
        if key not in ("step", "split", "elapsed_seconds") and number is not None:
            values[f"{split}/{key}"] = number
    return values


class MetricsLog:
    """Appends one JSON object per event to metrics.jsonl, kept open and flushed per event; on resume,
    drops events after the checkpoint (the file is rewritten atomically first).

    `kept` holds the events kept on resume, for the logs that mirror metrics.jsonl (TensorBoard, W&B).
    """

    def __init__(self, run_dir: AnyPath, resume_step: int, enabled: bool = True) -> None:
        self.target = RunDir(run_dir).metrics
        self.enabled = enabled
        self.elapsed_before = 0.0  # elapsed_seconds of the last kept event: a resumed run's clock continues
        self.kept: list[dict[str, Any]] = []
        self._file: TextIO | None = None
        self._copy: WorkingCopy | None = None
        if not enabled:
            return
        lines = []
        for line, record in _metrics_lines(self.target):
            if record.get("step", 0) <= resume_step:
                lines.append(line)
                self.kept.append(record)
                self.elapsed_before = float(record.get("elapsed_seconds", self.elapsed_before))
        self._copy = WorkingCopy(self.target)
        write_file(self._copy.path, "".join(line + "\n" for line in lines))
        self._file = self._copy.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps({key: json_number(value) for key, value in record.items()}) + "\n")
            self._file.flush()  # a crash loses no event, readers see whole lines

    def publish(self) -> None:
        """Make the target hold every event written so far (a local log already does)."""
        if self._copy is not None:
            self._copy.publish()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._copy is not None:
            try:
                self._copy.publish()
            finally:
                self._copy.close()
                self._copy = None


def _metrics_lines(path: AnyPath) -> list[tuple[str, dict[str, Any]]]:
    """(line, event) of a metrics.jsonl; a line cut by a crash (or still being written) is skipped."""
    parsed = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            parsed.append((line, record))
    return parsed


def read_metrics(run_dir: str | AnyPath, split: str | None = None) -> list[dict[str, Any]]:
    """The events of a run's metrics.jsonl (none when it has none yet), optionally only one split."""
    records = (record for _, record in _metrics_lines(RunDir(run_dir).metrics))
    return [r for r in records if split is None or r.get("split") == split]


def last_events(run_dir: str | AnyPath) -> dict[str, dict[str, Any]]:
    """The last event of each split ("train", "eval"), for model cards."""
    return {record.get("split", "train"): record for record in read_metrics(run_dir)}
