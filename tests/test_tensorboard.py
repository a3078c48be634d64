"""TensorBoard event files, read back by TensorBoard itself, and W&B (a fake `wandb` module): both mirror
metrics.jsonl, through a crash and a resume."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import smoke_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bert_flax.config import Config, LogConfig, config_to_dict
from bert_flax.errors import UserError
from bert_flax.pretrain import pretrain
from bert_flax.run.layout import check_run_dir, create_run_dir
from bert_flax.run.logs import RunLog
from bert_flax.run.metrics import read_metrics
from bert_flax.run.tensorboard import TensorBoardLog

Series = dict[str, list[tuple[int, float]]]


def _accumulator(directory: Path) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return events


def read_events(directory: Path) -> Series:
    """Every scalar TensorBoard reads from `directory`: tag → [(step, value)]."""
    events = _accumulator(directory)
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def metrics_series(run_dir: Path, to_float32: bool = True) -> Series:
    """metrics.jsonl as TensorBoard should show it: `split/key` tags, float32 values (simple_value)."""
    series: Series = {}
    for record in read_metrics(run_dir):
        for key, value in record.items():
            if key not in ("step", "split", "elapsed_seconds"):
                value = float(np.float32(value)) if to_float32 else float(value)  # float("inf"): see _json_value
                series.setdefault(f"{record['split']}/{key}", []).append((record["step"], value))
    return series


def test_written_scalars_read_back_by_tensorboard(tmp_path: Path) -> None:
    log = TensorBoardLog(tmp_path / "tb")
    log.log(1, {"train/loss": 7.25, "train/learning_rate": 1e-3}, wall_time=100.5)
    log.log(2, {"train/loss": 6.5, "eval/perplexity": 1e40}, wall_time=101.0)  # beyond float32
    log.log(300_000, {"train/loss": -0.1}, wall_time=102.0)
    log.close()
    (event_file,) = (tmp_path / "tb").iterdir()
    assert event_file.name.startswith("events.out.tfevents.")
    events = _accumulator(tmp_path / "tb")
    assert events.file_version == 2.0  # "brain.Event:2" in the first event
    assert sorted(events.Tags()["scalars"]) == ["eval/perplexity", "train/learning_rate", "train/loss"]
    loss = events.Scalars("train/loss")
    assert [(e.wall_time, e.step) for e in loss] == [(100.5, 1), (101.0, 2), (102.0, 300_000)]
    assert [e.value for e in loss] == [7.25, 6.5, float(np.float32(-0.1))]
    assert events.Scalars("train/learning_rate")[0].value == float(np.float32(1e-3))
    assert events.Scalars("eval/perplexity")[0].value == np.inf


def test_a_new_log_replaces_the_old_event_files_only(tmp_path: Path) -> None:
    """Resuming replays metrics.jsonl into a new file: the old events must not be read twice."""
    first = TensorBoardLog(tmp_path)
    first.log(1, {"train/loss": 1.0})
    first.close()
    (tmp_path / "notes.txt").write_text("kept")
    second = TensorBoardLog(tmp_path)
    second.log(2, {"train/loss": 0.5})
    second.close()
    assert read_events(tmp_path) == {"train/loss": [(2, 0.5)]}
    assert (tmp_path / "notes.txt").read_text() == "kept"


class FakeWandb(types.ModuleType):
    """Records what bert_flax asks of W&B: init's arguments, logged values, finish."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.inits: list[dict[str, Any]] = []
        self.logged: list[tuple[int, dict[str, float]]] = []
        self.finished: list[int | None] = []

    def init(self, **kwargs: Any) -> FakeWandb:  # the module stands in for the Run it returns
        self.inits.append(kwargs)
        return self

    def log(self, values: dict[str, float], step: int) -> None:
        self.logged.append((step, dict(values)))

    def finish(self, exit_code: int | None = None) -> None:
        self.finished.append(exit_code)

    def series(self, start: int = 0) -> Series:
        """The values logged since the `start`-th call, as tag → [(step, value)]."""
        series: Series = {}
        for step, values in self.logged[start:]:
            for tag, value in values.items():
                series.setdefault(tag, []).append((step, value))
        return series


def test_tensorboard_and_wandb_mirror_metrics_through_a_crash_and_resume(
    corpus_path: Path, smoke_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wandb = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    config = smoke_config(corpus_path, smoke_cache, "log.wandb=true", "log.wandb_project=bert-tests")
    run_dir = tmp_path / "run"
    pretrain(config, run_dir, stop_at=3, show_progress=False)
    assert read_events(run_dir / "tensorboard") == metrics_series(run_dir)
    assert wandb.series() == metrics_series(run_dir, to_float32=False)
    logged_before_crash = len(wandb.logged)

    shutil.rmtree(run_dir / "checkpoints" / "3")  # killed before step 3's checkpoint: step 3 is logged, not saved
    pretrain(config, run_dir, show_progress=False)
    events = read_events(run_dir / "tensorboard")
    assert events == metrics_series(run_dir)
    assert [step for step, _ in events["train/loss"]] == [1, 2, 3, 4]  # step 3 once: the rerun's
    assert [step for step, _ in events["eval/loss"]] == [2, 4]
    assert {"train/learning_rate", "train/tokens_per_second", "train/grad_norm", "eval/perplexity"} <= set(events)
    assert "train/elapsed_seconds" not in events
    assert len(list((run_dir / "tensorboard").iterdir())) == 1  # the old event file was replaced
    wall_times = [e.wall_time for e in _accumulator(run_dir / "tensorboard").Scalars("train/loss")]
    assert wall_times == sorted(wall_times)

    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    assert run_id and [init["id"] for init in wandb.inits] == [run_id, run_id]  # the resume continues the W&B run
    assert wandb.inits[0]["project"] == "bert-tests" and wandb.inits[0]["entity"] is None
    assert wandb.inits[0]["name"] == "run" and wandb.inits[0]["resume"] == "allow"
    assert wandb.inits[0]["config"] == config_to_dict(config) and wandb.inits[0]["dir"] == str(run_dir)
    assert wandb.finished == [0, 0]
    after_checkpoint = {
        tag: [(step, value) for step, value in points if step > 2]
        for tag, points in metrics_series(run_dir, to_float32=False).items()
    }
    assert wandb.series(logged_before_crash) == after_checkpoint  # W&B cannot rewind: the rerun from step 3


def _records(steps: range) -> list[dict[str, Any]]:
    out = []
    for step in steps:
        out.append({"step": step, "split": "train", "loss": 10.0 / step, "learning_rate": 1e-4 * step})
        if step % 2 == 0:
            out.append({"step": step, "split": "eval", "loss": 9.0 / step, "perplexity": float("inf")})
    return [{**record, "elapsed_seconds": 0.5 * record["step"]} for record in out]


def test_run_log_off_on_and_turned_on_when_resuming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """log.tensorboard=false writes no tensorboard/; W&B and TensorBoard turned on when resuming (not
    refused as another config) start with the events metrics.jsonl kept; other processes write nothing."""
    quiet = Config(log=LogConfig(tensorboard=False))
    run_dir = tmp_path / "run"
    create_run_dir(run_dir, quiet)
    log = RunLog(quiet, run_dir, 0, enabled=True)
    for record in _records(range(1, 4)):
        log.write(record)
    log.close()
    assert not (run_dir / "tensorboard").exists()
    assert [r["step"] for r in read_metrics(run_dir, "train")] == [1, 2, 3]

    loud = Config(log=LogConfig(wandb=True, wandb_run_name="named"))
    assert check_run_dir(run_dir, loud)  # a resume, not another run's config
    wandb = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    RunLog(loud, run_dir, 2, enabled=False).close()  # a process other than the main one
    assert not (run_dir / "tensorboard").exists() and not wandb.inits
    log = RunLog(loud, run_dir, 2, enabled=True)  # resumes from step 2: step 3 is dropped
    assert [r["step"] for r in read_metrics(run_dir, "train")] == [1, 2]
    assert read_events(run_dir / "tensorboard") == metrics_series(run_dir)
    for record in _records(range(3, 5)):
        log.write(record)
    log.close(failed=True)
    assert [r["step"] for r in read_metrics(run_dir, "train")] == [1, 2, 3, 4]
    assert read_events(run_dir / "tensorboard") == metrics_series(run_dir)
    assert wandb.series() == metrics_series(run_dir, to_float32=False)  # a new W&B run gets the kept steps
    assert wandb.inits[0]["name"] == "named" and wandb.finished == [1]


def test_wandb_missing_is_a_user_error_before_the_run_dir(
    corpus_path: Path, smoke_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(UserError, match=r"log.wandb=true needs the wandb package: pip install wandb"):
        pretrain(smoke_config(corpus_path, smoke_cache, "log.wandb=true"), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()
