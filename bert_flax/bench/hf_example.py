"""The baseline trainer: how transformers' Flax examples train BERT (run_mlm_flax.py).

`FlaxBertForPreTraining.__call__` (full-vocabulary logits at every position), cross-entropy on
one-hot labels with -100 (and [PAD]) ignored via `labels > 0`, plus NSP cross-entropy, `optax.adamw`
with the same schedule and no clipping, a flax `TrainState`, one jit with the state donated (their
`jax.pmap(train_step, donate_argnums=(0,))`), on the same mesh, batches and initial parameters as ours.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from flax.training.common_utils import onehot
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bert_flax.bench.timing import Batches, Mode, prepare_mode
from bert_flax.config import Config
from bert_flax.data.masking import to_hf_labels
from bert_flax.engine.optim import ADAM_EPS, learning_rate_schedule
from bert_flax.engine.step import DATA_AXIS
from bert_flax.model.pretraining import PretrainingModel


def hf_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our batch in the HF example's form: labels [B, L] with -100 where nothing is predicted."""
    return {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "token_type_ids": batch["token_type_ids"],
        "labels": to_hf_labels(batch),
        "next_sentence_label": batch["next_sentence_labels"][:, 0],  # one example per row
    }


def _hf_decay_mask(params: Any) -> Any:
    """run_mlm_flax's decay_mask_fn."""
    flat = flatten_dict(params)
    return unflatten_dict({path: path[-1] != "bias" and path[-2:] != ("LayerNorm", "scale") for path in flat})


class HFExampleStep:
    """The HF Flax example's train step, jitted on a ("data",) mesh over all devices (their pmap, as jit)."""

    def __init__(self, pretrained: PretrainingModel, config: Config) -> None:
        schedule = learning_rate_schedule(config.optim, config.train.steps)
        tx = optax.adamw(schedule, eps=ADAM_EPS, weight_decay=config.optim.weight_decay, mask=_hf_decay_mask)
        model, objectives = pretrained.model, config.train.objectives
        mesh = Mesh(np.asarray(jax.devices()), (DATA_AXIS,))
        replicated, rows = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(DATA_AXIS))
        self.place_batch = lambda batch: {key: jax.device_put(value, rows) for key, value in batch.items()}

        def train_step(state: train_state.TrainState, batch: dict, dropout_rng: jax.Array) -> tuple:
            dropout_rng, new_dropout_rng = jax.random.split(dropout_rng)

            def loss_fn(params: Any) -> jax.Array:
                labels_BxL = batch["labels"]
                out = state.apply_fn(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"],
                    params=params,
                    dropout_rng=dropout_rng,
                    train=True,
                )
                logits_BxLxV, nsp_logits_Bx2 = out[0], out[1]
                loss = jnp.zeros((), jnp.float32)
                if "mlm" in objectives:
                    label_mask_BxL = jnp.where(labels_BxL > 0, 1.0, 0.0)
                    mlm_BxL = optax.softmax_cross_entropy(logits_BxLxV, onehot(labels_BxL, logits_BxLxV.shape[-1]))
                    loss += (mlm_BxL * label_mask_BxL).sum() / label_mask_BxL.sum()
                if "nsp" in objectives:
                    labels_B = batch["next_sentence_label"]
                    loss += optax.softmax_cross_entropy_with_integer_labels(nsp_logits_Bx2, labels_B).mean()
                return loss

            loss, grad = jax.value_and_grad(loss_fn)(state.params)
            new_state = state.apply_gradients(grads=grad)
            return new_state, {"loss": loss, "learning_rate": schedule(state.step)}, new_dropout_rng

        self._step = jax.jit(
            train_step,
            in_shardings=(replicated, rows, replicated),
            out_shardings=(replicated, replicated, replicated),
            donate_argnums=(0,),
        )
        state = train_state.TrainState.create(apply_fn=model.__call__, params=pretrained.params, tx=tx)
        # The step's own output layout (int32 step, replicated arrays): the first call must not retrace.
        state = state.replace(step=jnp.zeros((), jnp.int32))
        self.state = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree), out_shardings=replicated)(state)
        self.dropout_rng = jax.device_put(jax.random.PRNGKey(config.train.seed), replicated)

    def step(self, state: Any, batch: dict) -> tuple[Any, dict]:
        state, metrics, self.dropout_rng = self._step(state, batch, self.dropout_rng)
        return state, metrics

    def compile(self, state: Any, batch: dict) -> Any:
        return self._step.lower(state, batch, self.dropout_rng).compile()


def hf_example_mode(config: Config, pretrained: PretrainingModel, batches: Batches, prefetch: int) -> Mode:
    """The HF example's step as a timed mode, from the same parameters and batches as ours."""
    hf = HFExampleStep(pretrained, config)
    place = lambda batch: hf.place_batch(hf_batch(batch))  # noqa: E731
    compile_step = lambda batch: hf.compile(hf.state, batch)  # noqa: E731
    loss = lambda outputs: float(outputs["loss"])  # noqa: E731
    return prepare_mode(compile_step, hf.step, hf.state, place, loss, batches, prefetch)
