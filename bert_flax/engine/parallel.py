"""Data parallelism over every device: the one place where train and eval steps are jitted.

`parallel.mode=jit` (default): a ("data",) mesh over all devices of all processes; batches are
global arrays sharded along `data`, the state is replicated. `parallel.mode=pmap` (pmap.py) is
the classic replicate-and-pmean recipe. Both expose the same small interface to the loop.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bert_flax.config import Config, ParallelConfig
from bert_flax.engine.step import DATA_AXIS, Batch, Metrics, Task, TrainState, make_eval_step, make_train_step
from bert_flax.errors import UserError


def initialize_distributed(config: ParallelConfig) -> None:
    """Join the multi-process job: `jax.distributed.initialize` with the configured values, the
    rest auto-detected (TPU, SLURM, Open MPI). Must run before anything touches a device.

    CPU processes exchange collectives through gloo, unless JAX_CPU_COLLECTIVES_IMPLEMENTATION
    chose another implementation (e.g. mpi).
    """
    if jax.distributed.is_initialized():  # a second pretrain() in the same process
        return
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    given = {
        "coordinator_address": config.coordinator_address or None,
        "num_processes": config.num_processes or None,
        "process_id": config.process_id if config.process_id >= 0 else None,
    }
    try:
        jax.distributed.initialize(**{key: value for key, value in given.items() if value is not None})
    except ValueError as err:  # nothing to auto-detect from: say which keys to set
        raise UserError(
            f"parallel.distributed=true: {err}; outside TPU/SLURM/Open MPI set parallel.coordinator_address, "
            "parallel.num_processes and parallel.process_id"
        ) from None


class DataParallel(Protocol):
    """What the training loop needs from a parallelism mode."""

    num_devices: int

    def place_state(self, state: TrainState) -> Any: ...  # a state from `host_state` layout → device layout
    def host_state(self, state: Any) -> TrainState: ...  # device layout → global arrays, one copy (checkpoints)
    def place_batch(self, local_batch: dict[str, np.ndarray]) -> Any: ...
    def train_step(self, state: Any, batch: Any) -> tuple[Any, Any]: ...
    def compile_train_step(self, state: Any, batch: Any) -> jax.stages.Compiled: ...  # ahead of time
    def eval_step(self, state: Any, batch: Any) -> Any: ...
    def read_metrics(self, metrics: Any) -> dict[str, float]: ...
    def read_rows(self, rows: Any) -> Any: ...  # per-row eval outputs → host arrays of the global batch


def check_batch_sizes(config: Config, num_devices: int, process_count: int) -> None:
    """Every device gets whole rows of every micro-batch and of every eval batch."""
    train, accum = config.train.batch_size, config.train.grad_accum_steps
    if train % (num_devices * accum):
        raise UserError(
            f"train.batch_size={train} is not divisible by {num_devices} devices × "
            f"train.grad_accum_steps={accum}; use a multiple of {num_devices * accum}"
        )
    check_eval_batch_size(config.eval.batch_size, num_devices)
    if train % process_count:
        raise UserError(f"train.batch_size={train} is not divisible by {process_count} processes")


def check_eval_batch_size(eval_batch_size: int, num_devices: int) -> None:
    """Every device gets whole rows of every eval batch."""
    if eval_batch_size % num_devices:
        raise UserError(
            f"eval.batch_size={eval_batch_size} is not divisible by {num_devices} devices; "
            f"use a multiple of {num_devices}"
        )


class JitDataParallel:
    """jit with explicit shardings: batch rows split along the mesh's `data` axis, state replicated."""

    def __init__(
        self,
        task: Task,
        tx: optax.GradientTransformation,
        schedule: optax.Schedule,
        config: Config,
        devices: Sequence[jax.Device] | None = None,
    ):
        self.mesh = Mesh(np.asarray(devices or jax.devices()), (DATA_AXIS,))
        self.num_devices = self.mesh.size
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))
        step = make_train_step(task, tx, schedule, config.train.grad_accum_steps)
        self._train_step = jax.jit(
            step,
            in_shardings=(self.replicated, self.batch_sharding),
            out_shardings=(self.replicated, self.replicated),
            donate_argnums=0,
        )
        self._eval_step = jax.jit(
            make_eval_step(task),
            in_shardings=(self.replicated, self.batch_sharding),
            out_shardings=self.batch_sharding if task.per_row_eval else self.replicated,
        )

    def place_state(self, state: TrainState) -> TrainState:
        """Fresh replicated buffers: the step donates them, the caller's arrays stay valid."""
        return jax.jit(lambda tree: jax.tree.map(jnp.copy, tree), out_shardings=self.replicated)(state)

    def host_state(self, state: TrainState) -> TrainState:
        return state

    def place_batch(self, local_batch: dict[str, np.ndarray]) -> Batch:
        return {
            key: jax.make_array_from_process_local_data(self.batch_sharding, value)
            for key, value in local_batch.items()
        }

    def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        return self._train_step(state, batch)

    def compile_train_step(self, state: TrainState, batch: Batch) -> jax.stages.Compiled:
        return self._train_step.lower(state, batch).compile()

    def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
        return self._eval_step(state.params, batch)

    def read_metrics(self, metrics: Metrics) -> dict[str, float]:
        return {key: float(value) for key, value in jax.device_get(metrics).items()}

    def read_rows(self, rows: Any) -> Any:
        if jax.process_count() > 1:  # each process holds its rows only
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(rows, tiled=True)
        return jax.device_get(rows)


def make_data_parallel(
    task: Task, tx: optax.GradientTransformation, schedule: optax.Schedule, config: Config
) -> DataParallel:
    """The configured mode (`check_batch_sizes` first: a bad batch size is a user error, not a crash)."""
    if config.parallel.mode == "pmap":
        if jax.process_count() > 1:  # its checkpoints hold per-process arrays: saving them would hang
            raise UserError("parallel.mode=pmap runs in one process only; use parallel.mode=jit with several processes")
        from bert_flax.engine.pmap import PmapDataParallel

        return PmapDataParallel(task, tx, schedule, config)
    return JitDataParallel(task, tx, schedule, config)
