"""MLM and NSP losses and accuracies as (sum, count) pairs, normalised on the host.

Sums and counts add up across devices, micro-batches and eval batches, so every reduction
is exact: the mean over a global batch is sum / count however the batch was split.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bert_flax.config import ModelConfig
from bert_flax.engine.step import Task
from bert_flax.model.pretraining import pretraining_logits

# Keys of the metric sums that a step returns; `normalize` turns them into means. `examples` (real examples)
# and `real_tokens` (non-padding positions) count what a batch held, for throughput.
SUM_KEYS = (
    "mlm_loss_sum", "mlm_correct", "mlm_count", "nsp_loss_sum", "nsp_correct", "nsp_count", "examples", "real_tokens"
)


def cross_entropy(logits_NxC: jax.Array, labels_N: jax.Array) -> jax.Array:
    log_probs_NxC = jax.nn.log_softmax(logits_NxC.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(log_probs_NxC, labels_N[..., None], axis=-1)[..., 0]


def mlm_sums(mlm_logits_BxPxV: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Cross-entropy and accuracy at the real prediction slots (masked_lm_weights > 0)."""
    weights_BxP = batch["masked_lm_weights"].astype(jnp.float32)
    labels_BxP = batch["masked_lm_ids"]
    loss_BxP = cross_entropy(mlm_logits_BxPxV, labels_BxP)
    correct_BxP = (jnp.argmax(mlm_logits_BxPxV, axis=-1) == labels_BxP).astype(jnp.float32)
    return {
        "mlm_loss_sum": jnp.sum(loss_BxP * weights_BxP),
        "mlm_correct": jnp.sum(correct_BxP * weights_BxP),
        "mlm_count": jnp.sum(weights_BxP),
    }


def nsp_sums(nsp_logits_BxEx2: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Cross-entropy and accuracy of IsNext (0) / NotNext (1) of every example slot; unused slots and eval
    padding weigh 0 (`example_weights`)."""
    labels_BxE = batch["next_sentence_labels"]
    weights_BxE = batch["example_weights"].astype(jnp.float32)
    loss_BxE = cross_entropy(nsp_logits_BxEx2, labels_BxE)
    correct_BxE = (jnp.argmax(nsp_logits_BxEx2, axis=-1) == labels_BxE).astype(jnp.float32)
    return {
        "nsp_loss_sum": jnp.sum(loss_BxE * weights_BxE),
        "nsp_correct": jnp.sum(correct_BxE * weights_BxE),
        "nsp_count": jnp.sum(weights_BxE),
    }


def metric_sums(
    mlm_logits_BxPxV: jax.Array | None, nsp_logits_BxEx2: jax.Array | None, batch: dict
) -> dict[str, jax.Array]:
    """All of SUM_KEYS; an objective that is not trained contributes zeros."""
    sums = {key: jnp.zeros((), jnp.float32) for key in SUM_KEYS}
    if mlm_logits_BxPxV is not None:
        sums.update(mlm_sums(mlm_logits_BxPxV, batch))
    if nsp_logits_BxEx2 is not None:
        sums.update(nsp_sums(nsp_logits_BxEx2, batch))
    sums["examples"] = jnp.sum(batch["example_weights"].astype(jnp.float32))
    sums["real_tokens"] = jnp.sum(batch["attention_mask"].astype(jnp.float32))
    return sums


def batch_counts(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The denominators of a batch's mean losses: real MLM predictions and real examples, so a packed batch
    and the same examples unpacked have the same loss."""
    return {
        "mlm_count": jnp.sum(batch["masked_lm_weights"].astype(jnp.float32)),
        "nsp_count": jnp.sum(batch["example_weights"].astype(jnp.float32)),
    }


def objective(sums: dict[str, jax.Array], counts: dict[str, jax.Array]) -> jax.Array:
    """The training loss: mean MLM loss + mean NSP loss, as BertForPreTraining defines it.

    `counts` are the whole batch's, so a micro-batch's share adds up to the batch's loss.
    """
    return sums["mlm_loss_sum"] / jnp.maximum(counts["mlm_count"], 1.0) + sums["nsp_loss_sum"] / jnp.maximum(
        counts["nsp_count"], 1.0
    )


def normalize(sums: dict[str, float | np.ndarray], objectives: tuple[str, ...]) -> dict[str, float]:
    """Host side: means, accuracies, perplexity and the total loss of the trained objectives."""
    sums = {key: float(value) for key, value in sums.items()}
    out: dict[str, float] = {}
    loss = 0.0
    if "mlm" in objectives:
        count = max(sums["mlm_count"], 1.0)
        out["mlm_loss"] = sums["mlm_loss_sum"] / count
        out["mlm_accuracy"] = sums["mlm_correct"] / count
        out["perplexity"] = float(np.exp(min(out["mlm_loss"], 700.0)))
        loss += out["mlm_loss"]
    if "nsp" in objectives:
        count = max(sums["nsp_count"], 1.0)
        out["nsp_loss"] = sums["nsp_loss_sum"] / count
        out["nsp_accuracy"] = sums["nsp_correct"] / count
        loss += out["nsp_loss"]
    out["loss"] = loss
    return out


def pretraining_task(model: Any, objectives: tuple[str, ...], options: ModelConfig | None = None) -> Task:
    """MLM + NSP on `FlaxBertForPreTraining`'s parameters (MLM head at the gathered positions) as a `Task`;
    `options` (config.model) picks the impl (hf / fast), attention dropout, remat and scan."""

    def loss(params: Any, batch: dict, counts: dict, dropout_rng: jax.Array) -> tuple[jax.Array, dict]:
        sums = metric_sums(*pretraining_logits(model, params, batch, objectives, dropout_rng, options), batch)
        return objective(sums, counts), sums

    def eval_outputs(params: Any, batch: dict) -> dict[str, jax.Array]:
        return metric_sums(*pretraining_logits(model, params, batch, objectives, None, options), batch)

    return Task(counts=batch_counts, loss=loss, eval_outputs=eval_outputs)
