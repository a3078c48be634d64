"""The run directory: where each of its entries lives, and the config that owns it.

A run dir belongs to one config. Rerunning the same config resumes; another config is refused
before anything in the directory is touched. Every module names a run's files through `RunDir`,
so the layout below (the README's run-directory table) is spelled once:

    config.yaml       the resolved config          metrics.jsonl   one JSON event per line
    tokenizer/        the tokenizer (HF format)    model_config.json  BertConfig of the checkpoints
    checkpoints/      Orbax steps                  unreadable_checkpoints/  steps moved aside
    final/            save_pretrained directory    best/           fine-tuning: the best eval's weights
    eval_report.json  fine-tuning: the last eval   labels.json     classification: the label set
    tensorboard/      event files                  wandb_id.txt    the W&B run a resume continues
    plots/, report.md `bert-flax report`

The run dir may be a local path or `gs://bucket/prefix` (storage.py): `RunDir.path` is then a GsPath,
files are written as whole objects and directories uploaded file by file (storage.write_file/write_dir),
and a checkpoint step counts only once Orbax has written its COMMIT_MARKER (Orbax cannot rename on GCS,
so an unfinished step sits at its final name without it).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bert_flax.config import Config, LogConfig, config_to_dict, dump_config, load_config
from bert_flax.errors import UserError
from bert_flax.storage import AnyPath, GsPath, check_writable, to_path, write_dir, write_file

COMMIT_MARKER = "commit_success.txt"  # Orbax writes it last into a finished step on GCS (CommitFileTemporaryPath)


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The paths of one run directory's entries."""

    path: AnyPath

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    TOKENIZER = "tokenizer"
    MODEL_CONFIG = "model_config.json"
    CHECKPOINTS = "checkpoints"
    UNREADABLE_CHECKPOINTS = "unreadable_checkpoints"
    FINAL = "final"
    BEST = "best"
    SAVED_EVAL = "eval.json"  # in final/ and best/: the eval metrics of those weights
    EVAL_REPORT = "eval_report.json"
    LABELS = "labels.json"
    TENSORBOARD = "tensorboard"
    WANDB_ID = "wandb_id.txt"
    PLOTS = "plots"
    REPORT = "report.md"

    def __init__(self, path: str | AnyPath) -> None:
        object.__setattr__(self, "path", to_path(path))

    def __truediv__(self, name: str) -> AnyPath:
        return self.path / name

    config = property(lambda self: self / self.CONFIG)
    metrics = property(lambda self: self / self.METRICS)
    tokenizer = property(lambda self: self / self.TOKENIZER)
    model_config = property(lambda self: self / self.MODEL_CONFIG)
    checkpoints = property(lambda self: self / self.CHECKPOINTS)
    unreadable_checkpoints = property(lambda self: self / self.UNREADABLE_CHECKPOINTS)
    final = property(lambda self: self / self.FINAL)
    best = property(lambda self: self / self.BEST)
    eval_report = property(lambda self: self / self.EVAL_REPORT)
    labels = property(lambda self: self / self.LABELS)
    tensorboard = property(lambda self: self / self.TENSORBOARD)
    wandb_id = property(lambda self: self / self.WANDB_ID)
    plots = property(lambda self: self / self.PLOTS)
    report = property(lambda self: self / self.REPORT)

    def is_run(self) -> bool:
        """A bert-flax run with checkpoints: a model source."""
        return self.config.is_file() and self.checkpoints.is_dir()

    def checkpoint_steps(self) -> list[int]:
        """Finished steps, oldest first (Orbax step directories are plain integers)."""
        return sorted(int(p.name) for p in self.step_dirs() if is_finished_step(p))

    def step_dirs(self) -> list[AnyPath]:
        """Every directory of checkpoints/ named by a step, finished or not."""
        return [p for p in self.checkpoints.iterdir() if p.name.isdigit()] if self.checkpoints.is_dir() else []


def is_finished_step(step_dir: AnyPath) -> bool:
    """A local step is finished once Orbax renamed it into place (with its state/); a gs:// one once it
    holds Orbax's COMMIT_MARKER."""
    if isinstance(step_dir, GsPath):
        return (step_dir / COMMIT_MARKER).is_file()
    return (step_dir / "state").is_dir()


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


def check_run_dir(run_dir: AnyPath, config: Config) -> bool:
    """True when `run_dir` holds this config's run (resume), False when it is new or empty; else an error.

    Also an error when the directory could not be written (or created), so a run never fails on
    its first checkpoint after the data and the model were prepared.
    """
    run = RunDir(run_dir)
    remote = isinstance(run.path, GsPath)
    if remote:  # the extra, the credentials and the bucket, before anything in it is read
        check_writable(run.path, "run dir", "pass another --run-dir")
    resuming = _check_owner(run, config)
    if not remote:
        check_writable(run.path, "run dir", "pass another --run-dir")
    return resuming


def _check_owner(run: RunDir, config: Config) -> bool:
    if run.config.is_file():
        try:
            saved = load_config(run.config)
        except UserError as err:
            raise UserError(
                f"run dir {run.path} has an unreadable {RunDir.CONFIG} ({err}); use another --run-dir"
            ) from None
        changed = _differences(config_to_dict(saved), config_to_dict(config))
        if changed:
            raise UserError(
                f"run dir {run.path} holds another run's config ({'; '.join(changed[:3])}); "
                "rerun with that config to resume, or pass another --run-dir"
            )
        return True
    if run.path.exists() and (not run.path.is_dir() or any(run.path.iterdir())):
        raise UserError(
            f"run dir {run.path} exists and is not a bert-flax run (no {RunDir.CONFIG}); pass another --run-dir"
        )
    return False


def create_run_dir(run_dir: AnyPath, config: Config, tokenizer: Any = None, model_config: Any = None) -> None:
    """A new run's config.yaml and, for a training run, its tokenizer/ and model_config.json (the
    BertConfig of the parameters its checkpoints hold), each written whole."""
    run = RunDir(run_dir)
    write_file(run.config, dump_config(config))
    if tokenizer is not None:
        write_dir(run.tokenizer, tokenizer.save_pretrained, last=("tokenizer_config.json",))
    if model_config is not None:
        write_file(run.model_config, model_config.to_json_string())


def save_pretrained_dir(target: AnyPath, model: Any, params: Any, tokenizer: Any, extra: dict | None = None) -> None:
    """`target` as a save_pretrained directory (weights, config, tokenizer, and `eval.json` = `extra`),
    never half written. `params` are host arrays (`jax.device_get`); `model` has `save_pretrained`."""

    def fill(directory: Path) -> None:
        model.save_pretrained(directory, params=params)
        tokenizer.save_pretrained(directory)
        if extra is not None:
            write_file(directory / RunDir.SAVED_EVAL, json.dumps(extra, indent=2) + "\n")

    write_dir(target, fill, last=("config.json", RunDir.SAVED_EVAL))


def read_saved_eval(model_dir: AnyPath) -> dict[str, Any] | None:
    """The `eval.json` that `save_pretrained_dir` wrote into final/ or best/, if it is there and readable."""
    try:
        value = json.loads((model_dir / RunDir.SAVED_EVAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
