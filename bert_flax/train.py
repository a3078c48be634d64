"""The pre-training loop: orchestration only. Everything it calls is tested on its own.

Order matters for "nothing lost": every check (config vs run dir, batch sizes, data, model,
vocabulary) runs before the run directory is created or touched.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np

from bert_flax.checkpoint import Checkpoints
from bert_flax.config import Config
from bert_flax.data.dataset import PretrainingData, build_pretraining_data
from bert_flax.data.pipeline import DataPosition, local_rows
from bert_flax.errors import UserError
from bert_flax.losses import normalize
from bert_flax.model import PretrainingModel, build_model
from bert_flax.optim import learning_rate_schedule, make_optimizer
from bert_flax.parallel import DataParallel, check_batch_sizes, initialize_distributed, make_data_parallel
from bert_flax.prefetch import Prefetcher
from bert_flax.preemption import StopSignals
from bert_flax.progress import Progress
from bert_flax.run_dir import MetricsLog, check_run_dir, create_run_dir
from bert_flax.train_step import init_train_state

FINAL_DIR = "final"
TOKENIZER_DIR = "tokenizer"
MODEL_CONFIG_FILE = "model_config.json"  # the BertConfig of the checkpoints' params
PREFETCH_BATCHES = 2  # train batches built and placed on the devices ahead of the step


class TrainingDiverged(UserError):
    """The loss or gradient norm became NaN/Inf; the last checkpoint before it is kept."""


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    step: int  # optimizer steps completed
    finished: bool  # reached train.steps (False: stopped early by `stop_at` or a signal)
    train: dict[str, float]  # the last logged train metrics
    eval: dict[str, float]  # the last eval metrics ({} without an eval split)
    stopped_by: str | None = None  # "SIGTERM"/"SIGINT": checkpointed at `step` and stopped


def _is_main() -> bool:
    return jax.process_index() == 0


def _check_finite(step: int, metrics: dict[str, float], checkpoints: Checkpoints) -> None:
    bad = [key for key in ("loss", "grad_norm", "param_norm") if not math.isfinite(metrics[key])]
    if bad:
        checkpoints.wait()
        kept = checkpoints.all_steps()
        last = f"the last good checkpoint is step {kept[-1]}" if kept else "no checkpoint was saved"
        raise TrainingDiverged(
            f"{bad[0]} is {metrics[bad[0]]} at step {step}; {last}; lower optim.learning_rate or set optim.clip_norm"
        )


def evaluate(
    parallel: DataParallel, state: Any, batches: list[dict[str, np.ndarray]], objectives: tuple[str, ...]
) -> dict[str, float]:
    """MLM loss/accuracy/perplexity and NSP loss/accuracy over all eval batches (one host sync)."""
    total = None
    for batch in batches:
        sums = parallel.eval_step(
            state, parallel.place_batch(local_rows(batch, jax.process_index(), jax.process_count()))
        )
        if jax.process_count() > 1:  # XLA:CPU's cross-process collectives hung when eval steps queued up
            jax.block_until_ready(sums)
        total = sums if total is None else jax.tree.map(lambda a, b: a + b, total, sums)
    return normalize(parallel.read_metrics(total), objectives)


def _save_final(run_dir: Path, pretrained: PretrainingModel, params: Any, data: PretrainingData) -> None:
    """RUN_DIR/final: config, flax_model.msgpack and the tokenizer, written aside then renamed into place."""
    host_params = jax.device_get(params)
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".final-"))
    pretrained.model.save_pretrained(tmp, params=host_params)
    data.tokenizer.save_pretrained(tmp)
    final = run_dir / FINAL_DIR
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


class _Trainer:
    """The state of one pretrain() call; methods are the loop's steps."""

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        parallel: DataParallel,
        checkpoints: Checkpoints,
        metrics: MetricsLog,
        progress: Progress,
    ) -> None:
        self.config, self.run_dir, self.parallel = config, run_dir, parallel
        self.checkpoints, self.metrics, self.progress = checkpoints, metrics, progress
        self.tokens_per_step = config.train.batch_size * config.data.max_seq_len
        self.t0 = time.perf_counter()
        self.last_read = (self.t0, 0)  # (time, step) of the last metrics read
        self.last_train: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}

    def elapsed(self) -> float:
        return self.metrics.elapsed_before + time.perf_counter() - self.t0

    def log_train(self, step: int, device_metrics: Any) -> None:
        """Read a step's metrics (a host sync on that step only), check them, log them."""
        raw = self.parallel.read_metrics(device_metrics)
        now = time.perf_counter()
        then, then_step = self.last_read
        tokens_per_second = self.tokens_per_step * (step - then_step) / max(now - then, 1e-9)
        self.last_read = (now, step)
        values = {
            **normalize(raw, self.config.train.objectives),
            "grad_norm": raw["grad_norm"],
            "param_norm": raw["param_norm"],
        }
        _check_finite(step, values, self.checkpoints)
        self.last_train = values
        self.metrics.write(
            {
                "step": step,
                "split": "train",
                **values,
                "learning_rate": raw["learning_rate"],
                "tokens_per_second": tokens_per_second,
                "elapsed_seconds": self.elapsed(),
            }
        )
        self.progress.update(step, values["loss"], tokens_per_second)

    def log_eval(self, step: int, state: Any, batches: list[dict[str, np.ndarray]]) -> None:
        values = evaluate(self.parallel, state, batches, self.config.train.objectives)
        self.last_eval = values
        self.metrics.write({"step": step, "split": "eval", **values, "elapsed_seconds": self.elapsed()})
        shown = " ".join(f"{key} {value:.4f}" for key, value in values.items())
        self.progress.message(f"eval step {step}: {shown}")

    def run(
        self,
        state: Any,
        start: int,
        stop: int,
        batches: Iterator,
        eval_batches: list | None,
        signals: StopSignals,
    ) -> tuple[Any, int, str | None]:
        """Steps start+1 .. stop on (device batch, position) items; step n's metrics are read after
        step n+1 is dispatched, so the host never waits for the step in flight. A stop signal ends
        the run after the current step and its checkpoint: (state, last step, signal name or None)."""
        every_eval, every_ckpt, total = self.config.eval.every, self.config.checkpoint.every, self.config.train.steps
        pending = None
        for step in range(start + 1, stop + 1):
            batch, position = next(batches)
            state, device_metrics = self.parallel.train_step(state, batch)
            if pending is not None:
                self.log_train(*pending)
            pending = (step, device_metrics)
            stopped_by = signals.requested(step)
            do_eval = eval_batches is not None and (step % every_eval == 0 or step == total)
            do_save = step % every_ckpt == 0 or step == stop or stopped_by is not None
            if do_eval or do_save:  # checked metrics before a checkpoint: a diverged state is never saved
                self.log_train(*pending)
                pending = None
            if do_eval:
                self.log_eval(step, state, eval_batches)
            if do_save:
                self.checkpoints.save(step, self.parallel.host_state(state), position)
            if do_eval or do_save:
                self.last_read = (time.perf_counter(), step)  # eval and saving are not training time
            if stopped_by is not None:
                self.progress.message(f"{stopped_by}: saving the checkpoint of step {step}, then stopping")
                return state, step, stopped_by
        return state, stop, None


def pretrain(config: Config, run_dir: str | Path, stop_at: int | None = None, show_progress: bool = True) -> RunResult:
    """Pre-train (or resume) in `run_dir`. `stop_at`: stop after that step with a checkpoint, as if preempted."""
    run_dir = Path(run_dir)
    if config.parallel.distributed:
        initialize_distributed(config.parallel)
    resuming = check_run_dir(run_dir, config)
    check_batch_sizes(config, jax.device_count(), jax.process_count())
    if stop_at is not None and not 1 <= stop_at <= config.train.steps:
        raise UserError(f"--stop-at must be in [1, train.steps={config.train.steps}]; got {stop_at}")
    data = build_pretraining_data(config)
    pretrained = build_model(config, data.ids.vocab_size)
    schedule = learning_rate_schedule(config.optim, config.train.steps)
    tx = make_optimizer(config.optim, config.train.steps)
    parallel = make_data_parallel(pretrained.model, tx, schedule, config)

    if _is_main() and not resuming:
        create_run_dir(run_dir, config)
        data.tokenizer.save_pretrained(run_dir / TOKENIZER_DIR)
        pretrained.config.to_json_file(run_dir / MODEL_CONFIG_FILE)  # checkpoints hold params only
    checkpoints = Checkpoints(run_dir / "checkpoints", config.checkpoint.keep)
    initial = parallel.place_state(init_train_state(pretrained.params, tx, config.train.seed))
    restored = checkpoints.restore_latest(parallel.host_state(initial))
    if restored is None:
        state, position = initial, DataPosition()
    else:
        host_state, position = restored
        del initial
        state = parallel.place_state(host_state)
    start = position.step
    stop = stop_at if stop_at is not None else config.train.steps
    metrics = MetricsLog(run_dir, start, enabled=_is_main())
    progress = Progress(config.train.steps, start, enabled=show_progress and _is_main())
    if start:
        progress.message(f"resuming {run_dir} from step {start}")
    trainer = _Trainer(config, run_dir, parallel, checkpoints, metrics, progress)
    host_batches = data.train.iterate(position, jax.process_index(), jax.process_count())
    batches = Prefetcher(host_batches, lambda item: (parallel.place_batch(item[0]), item[1]), PREFETCH_BATCHES)
    eval_batches = data.eval.eval_batches() if data.eval is not None else None
    try:
        with StopSignals() as signals:
            state, step, stopped_by = trainer.run(state, start, max(start, stop), batches, eval_batches, signals)
            checkpoints.wait()
    finally:
        batches.close()
        progress.close()
        checkpoints.close()
    finished = step >= config.train.steps and stopped_by is None
    if finished and _is_main():
        _save_final(run_dir, pretrained, parallel.host_state(state).params, data)
    return RunResult(run_dir, step, finished, trainer.last_train, trainer.last_eval, stopped_by)
