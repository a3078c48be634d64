"""The train state and the pure train/eval steps of any `Task`. Jitting, sharding and donation live
in parallel.py.

A step sees the whole batch it is given: the global batch under jit, or one device's share under
pmap (then `axis_name` names the device axis and counts, sums and gradients are psum-ed).
Losses are normalised by the whole batch's counts before differentiation, so gradient
accumulation and any split over devices give the large batch's gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

Params = Any
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
DROPOUT_STREAM = 1  # the dropout key is fold_in(PRNGKey(seed), DROPOUT_STREAM)
DATA_AXIS = "data"  # the axis batches are split along: the jit mesh's, or pmap's device axis


@dataclasses.dataclass(frozen=True)
class Task:
    """What the steps need from an objective (pre-training, classification, question answering).

    counts(batch): the batch's normalisers (summed over devices and micro-batches before use).
    loss(params, batch, counts, dropout_rng): (the loss to differentiate, metric sums).
    eval_outputs(params, batch): without dropout; metric sums, or with `per_row_eval` per-row outputs
    (e.g. logits) that stay split along the batch.
    """

    counts: Callable[[Batch], Metrics]
    loss: Callable[[Params, Batch, Metrics, jax.Array], tuple[jax.Array, Metrics]]
    eval_outputs: Callable[[Params, Batch], Any]
    per_row_eval: bool = False


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 []: optimizer steps taken
    params: Params  # float32, the FlaxBertForPreTraining tree
    opt_state: optax.OptState
    rng: jax.Array  # uint32 [2]: the base dropout key; step n uses fold_in(rng, n)


def init_train_state(params: Params, tx: optax.GradientTransformation, seed: int) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.fold_in(jax.random.PRNGKey(seed), DROPOUT_STREAM),
    )


def micro_batches(batch: Batch, num_micro: int) -> Batch:
    """[B, ...] → [num_micro, B / num_micro, ...]; micro-batch j holds rows j, j + A, j + 2A, ...

    Strided rows keep every micro-batch spread over all devices when B is sharded.
    """

    def split(x: jax.Array) -> jax.Array:
        return jnp.swapaxes(x.reshape(x.shape[0] // num_micro, num_micro, *x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def make_train_step(
    task: Task,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    grad_accum_steps: int = 1,
    axis_name: str | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """A pure `train_step(state, batch) -> (state, metrics)`; metrics: the task's sums, grad/param norms, learning rate."""

    def psum(tree: Any) -> Any:
        return tree if axis_name is None else jax.lax.psum(tree, axis_name)

    grad_fn = jax.grad(task.loss, has_aux=True)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        counts = psum(task.counts(batch))
        step_key = jax.random.fold_in(state.rng, state.step)
        if axis_name is not None:
            step_key = jax.random.fold_in(step_key, jax.lax.axis_index(axis_name))
        if grad_accum_steps == 1:
            grads, sums = grad_fn(state.params, batch, counts, step_key)
        else:

            def accumulate(carry: tuple, micro: tuple) -> tuple[tuple, None]:
                micro_batch, index = micro
                grads, sums = grad_fn(state.params, micro_batch, counts, jax.random.fold_in(step_key, index))
                return jax.tree.map(jnp.add, carry, (grads, sums)), None

            zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, state.params, batch, counts, step_key))
            xs = (micro_batches(batch, grad_accum_steps), jnp.arange(grad_accum_steps))
            (grads, sums), _ = jax.lax.scan(accumulate, zeros, xs)
        grads, sums = psum((grads, sums))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            **sums,
            "grad_norm": optax.tree.norm(grads),
            "param_norm": optax.tree.norm(params),  # NaN/Inf here: the new state must not be saved
            "learning_rate": schedule(state.step),
        }
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


def make_eval_step(task: Task, axis_name: str | None = None) -> Callable[[Params, Batch], Any]:
    """A pure `eval_step(params, batch)`: the task's eval sums (psum-ed over `axis_name`) or rows."""

    def eval_step(params: Params, batch: Batch) -> Any:
        outputs = task.eval_outputs(params, batch)
        return outputs if axis_name is None or task.per_row_eval else jax.lax.psum(outputs, axis_name)

    return eval_step
