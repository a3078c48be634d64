"""The pre-training loop: orchestration only. Everything it calls is tested on its own.

Order matters for "nothing lost": every check (config vs run dir, batch sizes, data, model,
vocabulary) runs before the run directory is created or touched.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import jax
import numpy as np

from bert_flax.config import Config
from bert_flax.data.dataset import PretrainingData, build_pretraining_data
from bert_flax.data.pipeline import DataPosition
from bert_flax.engine.checkpoint import Checkpoints, DataState
from bert_flax.engine.loop import RunResult, StepLoop, is_main_process, start_run, summed_eval
from bert_flax.engine.optim import learning_rate_schedule, make_optimizer
from bert_flax.engine.parallel import make_data_parallel
from bert_flax.engine.step import init_train_state
from bert_flax.interop.model_init import build_model
from bert_flax.model.losses import normalize, pretraining_task
from bert_flax.run.layout import RunDir, create_run_dir, save_pretrained_dir
from bert_flax.storage import AnyPath, to_path


def host_batches(
    data: PretrainingData, step: int, saved: DataState | None = None
) -> Iterator[tuple[dict[str, np.ndarray], DataState]]:
    """This process' rows of every batch after `step` (a multi-host run builds nothing twice), each with
    the stream position after it, which its checkpoint keeps. `saved`: the data state of the checkpoint
    of `step` (packed rows resume from it without packing the groups before); without it the position
    is found from the step."""
    start = DataPosition(**saved) if saved is not None else data.train.position(step)
    if start.step != step:
        raise ValueError(f"the saved data state is of step {start.step}, not {step}")
    batches = data.train.iterate(start, jax.process_index(), jax.process_count())
    return ((batch, dataclasses.asdict(position)) for batch, position in batches)


class PretrainLoop(StepLoop):
    """Pre-training's metrics (MLM/NSP means from sums) and eval (held-out documents)."""

    def __init__(self, *args: Any, eval_batches: list[dict[str, np.ndarray]] | None) -> None:
        super().__init__(*args)
        self.eval_batches, self.has_eval = eval_batches, eval_batches is not None

    def train_values(self, raw: dict[str, float]) -> dict[str, float]:
        normalized = normalize(raw, self.config.train.objectives)
        return {**normalized, "grad_norm": raw["grad_norm"], "param_norm": raw["param_norm"]}

    def eval_values(self, step: int, state: Any) -> dict[str, float]:
        return normalize(summed_eval(self.parallel, state, self.eval_batches), self.config.train.objectives)

    def throughput(self, raw: dict[str, float], steps: int, steps_per_second: float) -> dict[str, float]:
        """Examples and real (non-padding) tokens per step, means over the window, and real tokens/s."""
        real_tokens_per_step = raw["real_tokens"] / steps
        return {
            "examples_per_step": raw["examples"] / steps,
            "real_tokens_per_step": real_tokens_per_step,
            "real_tokens_per_second": real_tokens_per_step * steps_per_second,
        }


def pretrain(config: Config, run_dir: str | AnyPath, stop_at: int | None = None, show_progress: bool = True) -> RunResult:
    """Pre-train (or resume) in `run_dir`. `stop_at`: stop after that step with a checkpoint, as if preempted."""
    run_dir = to_path(run_dir)
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
    state, start, saved = initial, 0, None
    if restored is not None:  # the batch at a step is a function of the step; the saved state finds it fast
        del initial
        state, start, saved = parallel.place_state(restored.state), restored.step, restored.data
    stop = stop_at if stop_at is not None else config.train.steps
    eval_batches = None
    if data.eval is not None:
        eval_batches = data.eval.eval_batches(config.eval.max_batches, jax.process_index(), jax.process_count())
    loop = PretrainLoop(config, run_dir, parallel, checkpoints, start, show_progress, eval_batches=eval_batches)
    state, step, stopped_by = loop.run_all(state, start, stop, host_batches(data, start, saved))
    finished = step >= config.train.steps and stopped_by is None
    if finished and is_main_process():
        params = jax.device_get(parallel.host_state(state).params)
        save_pretrained_dir(run.final, pretrained.model, params, data.tokenizer)
    return RunResult(run_dir, step, finished, loop.last_train, loop.last_eval, stopped_by)
