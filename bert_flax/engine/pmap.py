"""`parallel.mode=pmap`: the classic data-parallel recipe, kept apart from the default jit mode.

The state is replicated with a leading device axis, each local device gets B / devices rows,
and the step psum-s counts, sums and gradients over the `data` axis (equal to pmean-ing the
per-device mean gradients, but exact when devices hold different numbers of MLM predictions).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bert_flax.config import Config
from bert_flax.engine.step import DATA_AXIS, Metrics, Task, TrainState, make_eval_step, make_train_step


class PmapDataParallel:
    def __init__(self, task: Task, tx: optax.GradientTransformation, schedule: optax.Schedule, config: Config):
        self.devices = jax.local_devices()
        self.num_devices = jax.device_count()
        self._stacked = NamedSharding(Mesh(np.asarray(self.devices), (DATA_AXIS,)), PartitionSpec(DATA_AXIS))
        step = make_train_step(task, tx, schedule, config.train.grad_accum_steps, axis_name=DATA_AXIS)
        self._train_step = jax.pmap(step, axis_name=DATA_AXIS, donate_argnums=(0,))
        self._eval_step = jax.pmap(make_eval_step(task, axis_name=DATA_AXIS), axis_name=DATA_AXIS)

    def place_state(self, state: TrainState) -> TrainState:
        """One copy per local device, stacked along a leading axis."""
        return jax.tree.map(lambda x: jax.device_put(jnp.stack([x] * len(self.devices)), self._stacked), state)

    def host_state(self, state: TrainState) -> TrainState:
        return jax.tree.map(lambda x: x[0], state)

    def place_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        devices = len(self.devices)
        return {
            key: jax.device_put(value.reshape(devices, value.shape[0] // devices, *value.shape[1:]), self._stacked)
            for key, value in local_batch.items()
        }

    def train_step(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, Metrics]:
        return self._train_step(state, batch)

    def compile_train_step(self, state: TrainState, batch: dict[str, jax.Array]) -> jax.stages.Compiled:
        return self._train_step.lower(state, batch).compile()

    def eval_step(self, state: TrainState, batch: dict[str, jax.Array]) -> Metrics:
        return self._eval_step(state.params, batch)

    def read_metrics(self, metrics: Metrics) -> dict[str, float]:
        """Metrics are psum-ed, so every device holds the same value: read device 0's."""
        return {key: float(value[0]) for key, value in jax.device_get(metrics).items()}

    def read_rows(self, rows: Any) -> Any:
        """[devices, B / devices, ...] → [B, ...]."""
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), jax.device_get(rows))
