"""metrics.jsonl, the source of truth of a run's events: written by `MetricsLog`, read by `read_metrics`.

One JSON object per line: step, split ("train", "eval"), and the numbers of that event. NaN and
Inf, which JSON cannot spell, are written as the strings "nan", "inf", "-inf".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from bert_flax.disk import write_file
from bert_flax.formats import json_number, read_number
from bert_flax.run.layout import RunDir


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

    def __init__(self, run_dir: Path, resume_step: int, enabled: bool = True) -> None:
        self.path = RunDir(run_dir).metrics
        self.enabled = enabled
        self.elapsed_before = 0.0  # elapsed_seconds of the last kept event: a resumed run's clock continues
        self.kept: list[dict[str, Any]] = []
        self._file: TextIO | None = None
        if not enabled:
            return
        lines = []
        for line, record in _metrics_lines(self.path):
            if record.get("step", 0) <= resume_step:
                lines.append(line)
                self.kept.append(record)
                self.elapsed_before = float(record.get("elapsed_seconds", self.elapsed_before))
        write_file(self.path, "".join(line + "\n" for line in lines))
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps({key: json_number(value) for key, value in record.items()}) + "\n")
            self._file.flush()  # a crash loses no event, readers see whole lines

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _metrics_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
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


def read_metrics(run_dir: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """The events of a run's metrics.jsonl (none when it has none yet), optionally only one split."""
    records = (record for _, record in _metrics_lines(RunDir(run_dir).metrics))
    return [r for r in records if split is None or r.get("split") == split]


def last_events(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The last event of each split ("train", "eval"), for model cards."""
    return {record.get("split", "train"): record for record in read_metrics(run_dir)}
