"""The step loop that pre-training and fine-tuning share: steps, metrics summed on the device and read
only at log points (`log.every`, evals, checkpoints), evals, checkpoints and stop signals. Subclasses
say what a step's metrics mean and what an eval is.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Iterator

import jax
import numpy as np

from bert_flax.config import Config
from bert_flax.engine.checkpoint import Checkpoints, DataState
from bert_flax.engine.parallel import DataParallel, check_batch_sizes, initialize_distributed
from bert_flax.engine.preemption import StopSignals
from bert_flax.engine.prefetch import Prefetcher
from bert_flax.errors import UserError
from bert_flax.run.layout import check_run_dir
from bert_flax.run.logs import RunLog
from bert_flax.run.progress import Progress
from bert_flax.run.wandb_log import import_wandb
from bert_flax.storage import AnyPath

CHECKED = ("loss", "grad_norm", "param_norm")  # non-finite: the run has diverged
PREFETCH_BATCHES = 2  # host batches built ahead of the step, in a thread
# Step metrics whose window value is the last step's; MEAN_KEYS are averaged; all others (the task's
# sums and counts) are summed, so a window's means are exact over all its tokens.
LATEST_KEYS = ("param_norm", "learning_rate")
MEAN_KEYS = ("grad_norm",)


@jax.jit
def _accumulate(total: dict[str, jax.Array], metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {key: value if key in LATEST_KEYS else total[key] + value for key, value in metrics.items()}


class MetricWindow:
    """The device-side running total of the step metrics since the last read: no host transfer per step."""

    def __init__(self) -> None:
        self.total: dict[str, jax.Array] | None = None
        self.steps = 0

    def add(self, metrics: dict[str, jax.Array]) -> None:
        self.total = metrics if self.total is None else _accumulate(self.total, metrics)
        self.steps += 1

    def take(self) -> tuple[dict[str, jax.Array], int]:
        """(the window's device totals, its number of steps); the next window starts empty."""
        assert self.total is not None, "take() of an empty window"
        taken = (self.total, self.steps)
        self.total, self.steps = None, 0
        return taken


class TrainingDiverged(UserError):
    """The loss or gradient norm became NaN/Inf; the last checkpoint before it is kept."""


@dataclasses.dataclass
class RunResult:
    """How a pretrain or finetune call ended."""

    run_dir: AnyPath
    step: int  # optimizer steps completed
    finished: bool  # reached train.steps (False: stopped early by `stop_at` or a signal)
    train: dict[str, float]  # the last logged train metrics
    eval: dict[str, float]  # the last eval metrics ({} without an eval split)
    stopped_by: str | None = None  # "SIGTERM"/"SIGINT": checkpointed at `step` and stopped


def summed_eval(parallel: DataParallel, state: Any, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """The task's eval sums over this process' rows of `batches`, added up over all of them."""
    total = None
    for batch in batches:
        sums = parallel.eval_step(state, parallel.place_batch(batch))
        # One eval step in flight: XLA:CPU's collectives deadlock (then abort) when the steps of several
        # batches queue up on simulated devices, and hung across processes; eval is not the hot path.
        jax.block_until_ready(sums)
        total = sums if total is None else jax.tree.map(lambda a, b: a + b, total, sums)
    return parallel.read_metrics(total)


def is_main_process() -> bool:
    return jax.process_index() == 0


def start_run(config: Config, run_dir: AnyPath, stop_at: int | None) -> bool:
    """The checks every run makes before it reads data or touches `run_dir` (joining a multi-process
    job first); True when `run_dir` holds this config's run to resume."""
    if config.log.wandb:  # every process, so a multi-process job fails everywhere instead of waiting
        import_wandb()
    if config.parallel.distributed:
        initialize_distributed(config.parallel)
    resuming = check_run_dir(run_dir, config)
    check_batch_sizes(config, jax.device_count(), jax.process_count())
    if stop_at is not None and not 1 <= stop_at <= config.train.steps:
        raise UserError(f"--stop-at must be in [1, train.steps={config.train.steps}]; got {stop_at}")
    return resuming


class StepLoop:
    """Steps of one run. Subclasses define `train_values` and, when `has_eval`, `eval_values`."""

    has_eval = False

    def __init__(
        self,
        config: Config,
        run_dir: AnyPath,
        parallel: DataParallel,
        checkpoints: Checkpoints,
        start: int,
        show_progress: bool,
    ) -> None:
        self.config, self.run_dir, self.parallel, self.checkpoints = config, run_dir, parallel, checkpoints
        self.metrics = RunLog(config, run_dir, start, enabled=is_main_process())
        self.progress = Progress(config.train.steps, start, enabled=show_progress and is_main_process())
        if start:
            self.progress.message(f"resuming {run_dir} from step {start}")
        self.tokens_per_step = config.train.batch_size * config.data.max_seq_len
        self.t0 = time.perf_counter()
        self.last_read = (self.t0, start)  # (time, step) of the last metrics read
        self.last_train: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}

    def train_values(self, raw: dict[str, float]) -> dict[str, float]:
        """The logged metrics of a step from its raw device metrics; must include CHECKED."""
        raise NotImplementedError

    def eval_values(self, step: int, state: Any) -> dict[str, float]:
        raise NotImplementedError

    def throughput(self, raw: dict[str, float], steps: int, steps_per_second: float) -> dict[str, float]:
        """Rates a train record adds from the raw sums of its `steps` steps; none by default."""
        return {}

    def elapsed(self) -> float:
        return self.metrics.elapsed_before + time.perf_counter() - self.t0

    def log_train(self, step: int, device_metrics: Any, steps: int = 1) -> None:
        """Read the metrics of the `steps` steps up to `step` (a host sync on `step` only), check them, log them."""
        raw = self.parallel.read_metrics(device_metrics)
        for key in MEAN_KEYS:
            raw[key] /= steps
        now = time.perf_counter()
        then, then_step = self.last_read
        steps_per_second = (step - then_step) / max(now - then, 1e-9)
        tokens_per_second = self.tokens_per_step * steps_per_second
        self.last_read = (now, step)
        values = self.train_values(raw)
        bad = [key for key in CHECKED if not math.isfinite(values[key])]
        if bad:
            self.checkpoints.wait()
            kept = self.checkpoints.all_steps()
            last = f"the last good checkpoint is step {kept[-1]}" if kept else "no checkpoint was saved"
            raise TrainingDiverged(
                f"{bad[0]} is {values[bad[0]]} at step {step}; {last}; lower optim.learning_rate or set optim.clip_norm"
            )
        self.last_train = values
        record = {"step": step, "split": "train", **values, "learning_rate": raw["learning_rate"]}
        record.update(tokens_per_second=tokens_per_second, **self.throughput(raw, steps, steps_per_second))
        self.metrics.write({**record, "elapsed_seconds": self.elapsed()})
        self.progress.update(step, values["loss"], tokens_per_second)

    def log_eval(self, step: int, state: Any) -> None:
        values = self.eval_values(step, state)
        self.last_eval = values
        self.metrics.write({"step": step, "split": "eval", **values, "elapsed_seconds": self.elapsed()})
        shown = " ".join(f"{key} {value:.4f}" for key, value in values.items())
        self.progress.message(f"eval step {step}: {shown}")

    def run_all(
        self, state: Any, start: int, stop: int, host_batches: Iterator[tuple[dict[str, np.ndarray], DataState]]
    ) -> tuple[Any, int, str | None]:
        """`run` with the host batches built PREFETCH_BATCHES ahead and SIGTERM/SIGINT caught; waits for
        the last checkpoint and closes the progress bar, the checkpoint manager and the logs."""
        batches = Prefetcher(host_batches, PREFETCH_BATCHES)
        failed = True
        try:
            with StopSignals() as signals:
                result = self.run(state, start, max(start, stop), batches, signals)
                self.checkpoints.wait()
            failed = False
        finally:
            batches.close()
            self.progress.close()
            try:
                self.checkpoints.close()
            finally:
                self.metrics.close(failed)
        return result

    def run(
        self, state: Any, start: int, stop: int, batches: Iterator, signals: StopSignals
    ) -> tuple[Any, int, str | None]:
        """Steps start+1 .. stop on (host batch, data state) items, placed on the devices here (JAX calls
        stay on this thread; transfers are asynchronous on accelerators). Metrics add up on the device;
        a window that ends at step n (every `log.every` steps, and at evals, checkpoints and the stop) is
        read after step n+1 is dispatched, so the host never waits for the step in flight. A stop signal
        ends the run after the current step and its checkpoint: (state, last step, signal name or None).
        A checkpoint of step n stores the data state that came with batch n."""
        every_eval, every_ckpt, total = self.config.eval.every, self.config.checkpoint.every, self.config.train.steps
        every_log = self.config.log.every
        window = MetricWindow()
        pending = None
        for step in range(start + 1, stop + 1):
            local_batch, data_state = next(batches)
            state, device_metrics = self.parallel.train_step(state, self.parallel.place_batch(local_batch))
            window.add(device_metrics)
            if pending is not None:
                self.log_train(*pending)
                pending = None
            stopped_by = signals.requested(step)
            do_eval = self.has_eval and (step % every_eval == 0 or step == total)
            do_save = step % every_ckpt == 0 or step == stop or stopped_by is not None
            if step % every_log == 0 or do_eval or do_save:
                pending = (step, *window.take())
            if do_eval or do_save:  # checked metrics before a checkpoint: a diverged state is never saved
                self.log_train(*pending)
                pending = None
            if do_eval:
                self.log_eval(step, state)
            if do_save:
                self.checkpoints.save(step, self.parallel.host_state(state), data_state)
                self.metrics.publish()  # a gs:// run dir's logs, up to this checkpoint
            if do_eval or do_save:
                self.last_read = (time.perf_counter(), step)  # eval and saving are not training time
            if stopped_by is not None:
                self.progress.message(f"{stopped_by}: saving the checkpoint of step {step}, then stopping")
                return state, step, stopped_by
        return state, stop, None
