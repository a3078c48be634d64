"""The pre-training loop: orchestration only. Everything it calls is tested on its own.

Order matters for "nothing lost": every check (config vs run dir, batch sizes, data, model,
vocabulary) runs before the run directory is created or touched.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np

from bert_flax.config import Config
from bert_flax.data.dataset import PretrainingData, build_pretraining_data
from bert_flax.data.pipeline import DataPosition
from bert_flax.engine.checkpoint import Checkpoints
from bert_flax.engine.loop import StepLoop, TrainingDiverged, is_main_process, start_run  # noqa: F401  (TrainingDiverged: API)
from bert_flax.engine.optim import learning_rate_schedule, make_optimizer
from bert_flax.engine.parallel import DataParallel, make_data_parallel
from bert_flax.engine.step import init_train_state
from bert_flax.model.losses import normalize, pretraining_task
from bert_flax.model.pretraining import build_model
from bert_flax.run.layout import RunDir, create_run_dir, save_pretrained_dir


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    step: int  # optimizer steps completed
    finished: bool  # reached train.steps (False: stopped early by `stop_at` or a signal)
    train: dict[str, float]  # the last logged train metrics
    eval: dict[str, float]  # the last eval metrics ({} without an eval split)
    stopped_by: str | None = None  # "SIGTERM"/"SIGINT": checkpointed at `step` and stopped


def heldout_metrics(
    parallel: DataParallel, state: Any, batches: list[dict[str, np.ndarray]], objectives: tuple[str, ...]
) -> dict[str, float]:
    """MLM loss/accuracy/perplexity and NSP loss/accuracy over this process' rows of the eval batches."""
    total = None
    for batch in batches:
        sums = parallel.eval_step(state, parallel.place_batch(batch))
        # One eval step in flight: XLA:CPU's collectives deadlock (then abort) when the steps of several
        # batches queue up on simulated devices, and hung across processes; eval is not the hot path.
        jax.block_until_ready(sums)
        total = sums if total is None else jax.tree.map(lambda a, b: a + b, total, sums)
    return normalize(parallel.read_metrics(total), objectives)


def host_batches(data: PretrainingData, position: DataPosition) -> Iterator[tuple[dict[str, np.ndarray], DataPosition]]:
    """This process' rows of every batch from `position` on (a multi-host run builds nothing twice)."""
    return data.train.iterate(position, jax.process_index(), jax.process_count())


class _Trainer(StepLoop):
    """Pre-training's metrics (MLM/NSP means from sums) and eval (held-out documents)."""

    def __init__(self, *args: Any, eval_batches: list[dict[str, np.ndarray]] | None) -> None:
        super().__init__(*args)
        self.eval_batches, self.has_eval = eval_batches, eval_batches is not None

    def train_values(self, raw: dict[str, float]) -> dict[str, float]:
        normalized = normalize(raw, self.config.train.objectives)
        return {**normalized, "grad_norm": raw["grad_norm"], "param_norm": raw["param_norm"]}

    def eval_values(self, step: int, state: Any) -> dict[str, float]:
        return heldout_metrics(self.parallel, state, self.eval_batches, self.config.train.objectives)


def pretrain(config: Config, run_dir: str | Path, stop_at: int | None = None, show_progress: bool = True) -> RunResult:
    """Pre-train (or resume) in `run_dir`. `stop_at`: stop after that step with a checkpoint, as if preempted."""
    run_dir = Path(run_dir)
    resuming = start_run(config, run_dir, stop_at)
    data = build_pretraining_data(config)
    pretrained = build_model(config, data.ids.vocab_size)
    schedule = learning_rate_schedule(config.optim, config.train.steps)
    tx = make_optimizer(config.optim, config.train.steps)
    task = pretraining_task(pretrained.model, config.train.objectives, config.model)
    parallel = make_data_parallel(task, tx, schedule, config)

    run = RunDir(run_dir)
    if is_main_process() and not resuming:
        create_run_dir(run_dir, config, data.tokenizer, pretrained.config)
    checkpoints = Checkpoints(run_dir, config.checkpoint.keep)
    initial = parallel.place_state(init_train_state(pretrained.params, tx, config.train.seed))
    restored = checkpoints.restore_latest(parallel.host_state(initial))
    if restored is None:
        state, position = initial, DataPosition()
    else:
        host_state, position = restored
        del initial
        state = parallel.place_state(host_state)
        position = data.train.position(position.step)  # the batch at a step depends on the step alone
    start = position.step
    stop = stop_at if stop_at is not None else config.train.steps
    eval_batches = None
    if data.eval is not None:
        eval_batches = data.eval.eval_batches(config.eval.max_batches, jax.process_index(), jax.process_count())
    trainer = _Trainer(config, run_dir, parallel, checkpoints, start, show_progress, eval_batches=eval_batches)
    state, step, stopped_by = trainer.run_all(state, start, stop, host_batches(data, position))
    finished = step >= config.train.steps and stopped_by is None
    if finished and is_main_process():
        params = jax.device_get(parallel.host_state(state).params)
        save_pretrained_dir(run.final, pretrained.model, params, data.tokenizer)
    return RunResult(run_dir, step, finished, trainer.last_train, trainer.last_eval, stopped_by)
