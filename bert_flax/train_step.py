"""The train state and the pure train/eval steps. Jitting, sharding and donation live in parallel.py.

A step sees the whole batch it is given: the global batch under jit, or one device's share under
pmap (then `axis_name` names the device axis and counts, sums and gradients are psum-ed).
Losses are normalised by the whole batch's counts before differentiation, so gradient
accumulation and any split over devices give the large batch's gradient.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from bert_flax.losses import batch_counts, metric_sums, objective
from bert_flax.model import Params, pretraining_logits

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
DROPOUT_STREAM = 1  # the dropout key is fold_in(PRNGKey(seed), DROPOUT_STREAM)


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
    model: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    objectives: tuple[str, ...],
    grad_accum_steps: int = 1,
    axis_name: str | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """A pure `train_step(state, batch) -> (state, metrics)`; metrics: SUM_KEYS, grad/param norms, learning rate."""

    def psum(tree: Any) -> Any:
        return tree if axis_name is None else jax.lax.psum(tree, axis_name)

    def loss_fn(params: Params, batch: Batch, counts: dict, rng: jax.Array) -> tuple[jax.Array, Metrics]:
        mlm_logits_BxPxV, nsp_logits_Bx2 = pretraining_logits(model, params, batch, objectives, rng)
        sums = metric_sums(mlm_logits_BxPxV, nsp_logits_Bx2, batch)
        return objective(sums, counts), sums

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        counts = psum(batch_counts(batch))
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


def make_eval_step(
    model: Any, objectives: tuple[str, ...], axis_name: str | None = None
) -> Callable[[Params, Batch], Metrics]:
    """A pure `eval_step(params, batch) -> SUM_KEYS sums`, without dropout."""

    def eval_step(params: Params, batch: Batch) -> Metrics:
        mlm_logits_BxPxV, nsp_logits_Bx2 = pretraining_logits(model, params, batch, objectives)
        sums = metric_sums(mlm_logits_BxPxV, nsp_logits_Bx2, batch)
        return sums if axis_name is None else jax.lax.psum(sums, axis_name)

    return eval_step
