"""The run directory: the resolved config that guards it, and metrics.jsonl.

A run dir belongs to one config. Rerunning the same config resumes; another config is refused
before anything in the directory is touched.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bert_flax.config import Config, LogConfig, config_to_dict, dump_config, load_config
from bert_flax.disk import check_writable_dir
from bert_flax.errors import UserError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"


# How many processes run it and how they meet, not what it computes: a run resumes under another
# process layout (a multi-process run's checkpoints in one process, and back).
LAUNCH_KEYS = frozenset(
    {"parallel.distributed", "parallel.coordinator_address", "parallel.num_processes", "parallel.process_id"}
)
# Where metrics are reported, not what is computed: TensorBoard or W&B can be turned on when resuming.
LOG_KEYS = frozenset(f"{LogConfig.section}.{field.name}" for field in dataclasses.fields(LogConfig))


def _differences(old: dict, new: dict) -> list[str]:
    return [
        f"{section}.{key}: {old[section].get(key)!r} → {value!r}"
        for section, values in new.items()
        for key, value in values.items()
        if f"{section}.{key}" not in LAUNCH_KEYS | LOG_KEYS and old.get(section, {}).get(key) != value
    ]


def check_run_dir(run_dir: Path, config: Config) -> bool:
    """True when `run_dir` holds this config's run (resume), False when it is new or empty; else an error.

    Also an error when the directory could not be written (or created), so a run never fails on
    its first checkpoint after the data and the model were prepared.
    """
    resuming = _check_owner(run_dir, config)
    check_writable_dir(run_dir, "run dir", "pass another --run-dir")
    return resuming


def _check_owner(run_dir: Path, config: Config) -> bool:
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        try:
            saved = load_config(config_path)
        except UserError as err:
            raise UserError(
                f"run dir {run_dir} has an unreadable {CONFIG_FILE} ({err}); use another --run-dir"
            ) from None
        changed = _differences(config_to_dict(saved), config_to_dict(config))
        if changed:
            raise UserError(
                f"run dir {run_dir} holds another run's config ({'; '.join(changed[:3])}); "
                "rerun with that config to resume, or pass another --run-dir"
            )
        return True
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(
            f"run dir {run_dir} exists and is not a bert-flax run (no {CONFIG_FILE}); pass another --run-dir"
        )
    return False


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file, so a reader never sees half of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def save_pretrained_dir(target: Path, model: Any, params: Any, tokenizer: Any, extra: dict | None = None) -> None:
    """`target` as a save_pretrained directory (weights, config, tokenizer, and `eval.json` = `extra`),
    written to a temporary directory beside it and renamed into place, so it is never half written."""
    import jax  # here, not at the top: reading configs and metrics needs no JAX

    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    model.save_pretrained(tmp, params=jax.device_get(params))
    tokenizer.save_pretrained(tmp)
    if extra is not None:
        (tmp / "eval.json").write_text(json.dumps(extra, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def create_run_dir(run_dir: Path, config: Config) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / CONFIG_FILE, dump_config(config))


def _json_value(value: Any) -> Any:
    """NaN and Inf as strings: JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A metrics record's numbers tagged `split/key` (TensorBoard, W&B): all but step and elapsed_seconds."""
    split = record.get("split", "train")
    values = {}
    for key, value in record.items():
        if key in ("step", "split", "elapsed_seconds") or isinstance(value, bool):
            continue
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):  # see _json_value
            value = float(value)
        if isinstance(value, numbers.Real):
            values[f"{split}/{key}"] = float(value)
    return values


class MetricsLog:
    """Appends one JSON object per event to metrics.jsonl; on resume, drops events after the checkpoint.

    `kept` holds the events kept on resume, for the logs that mirror metrics.jsonl (TensorBoard, W&B).
    """

    def __init__(self, run_dir: Path, resume_step: int, enabled: bool = True) -> None:
        self.path = run_dir / METRICS_FILE
        self.enabled = enabled
        self.elapsed_before = 0.0  # elapsed_seconds of the last kept event: a resumed run's clock continues
        self.kept: list[dict[str, Any]] = []
        if not enabled:
            return
        lines = []
        for line, record in _metrics_lines(self.path):
            if record.get("step", 0) <= resume_step:
                lines.append(line)
                self.kept.append(record)
                self.elapsed_before = float(record.get("elapsed_seconds", self.elapsed_before))
        write_atomic(self.path, "".join(line + "\n" for line in lines))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({key: _json_value(value) for key, value in record.items()}) + "\n")


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
    records = (record for _, record in _metrics_lines(Path(run_dir) / METRICS_FILE))
    return [r for r in records if split is None or r.get("split") == split]
