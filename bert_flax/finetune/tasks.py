"""Classification and question answering as `Task`s for the generic train/eval steps.

Classification: cross-entropy over the labels (rows with label -1, a label the training data
lacks, weigh 0). QA: (start + end cross-entropy) / 2, as transformers' BertForQuestionAnswering.
Eval returns the logits of every row; metrics are computed on the host (classify_metrics.py,
qa_postprocess.py + squad_metrics.py).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bert_flax.engine.step import Task
from bert_flax.model.losses import cross_entropy


def _logits(model: Any, params: Any, batch: dict, dropout_rng: jax.Array | None) -> Any:
    input_ids_BxL = batch["input_ids"]
    position_ids_BxL = jnp.broadcast_to(jnp.arange(input_ids_BxL.shape[1]), input_ids_BxL.shape)
    return model.module.apply(
        {"params": params},
        input_ids_BxL,
        batch["attention_mask"],
        batch["token_type_ids"],
        position_ids_BxL,
        None,
        deterministic=dropout_rng is None,
        return_dict=False,
        rngs={} if dropout_rng is None else {"dropout": dropout_rng},
    )


def _row_weights(batch: dict) -> jax.Array:
    labels_B = batch["labels"]
    weights_B = batch.get("example_weights", jnp.ones(labels_B.shape, jnp.float32))
    return weights_B * (labels_B >= 0)


def classification_task(model: Any) -> Task:
    def counts(batch: dict) -> dict[str, jax.Array]:
        return {"count": jnp.sum(_row_weights(batch))}

    def sums(logits_BxC: jax.Array, batch: dict) -> dict[str, jax.Array]:
        weights_B, labels_B = _row_weights(batch), jnp.maximum(batch["labels"], 0)
        predicted_B = jnp.argmax(logits_BxC, axis=-1)
        return {
            "loss_sum": jnp.sum(cross_entropy(logits_BxC, labels_B) * weights_B),
            "correct": jnp.sum((predicted_B == labels_B) * weights_B),
            "count": jnp.sum(weights_B),
        }

    def loss(params: Any, batch: dict, counts: dict, dropout_rng: jax.Array) -> tuple[jax.Array, dict]:
        values = sums(_logits(model, params, batch, dropout_rng)[0], batch)
        return values["loss_sum"] / jnp.maximum(counts["count"], 1.0), values

    def eval_outputs(params: Any, batch: dict) -> dict[str, jax.Array]:
        return {"logits": _logits(model, params, batch, None)[0].astype(jnp.float32)}

    return Task(counts=counts, loss=loss, eval_outputs=eval_outputs, per_row_eval=True)


def qa_task(model: Any) -> Task:
    def counts(batch: dict) -> dict[str, jax.Array]:
        return {"count": jnp.sum(batch.get("example_weights", jnp.ones(batch["start_positions"].shape)))}

    def loss(params: Any, batch: dict, counts: dict, dropout_rng: jax.Array) -> tuple[jax.Array, dict]:
        start_logits_BxL, end_logits_BxL = _logits(model, params, batch, dropout_rng)[:2]
        weights_B = batch.get("example_weights", jnp.ones(batch["start_positions"].shape))
        start_B = cross_entropy(start_logits_BxL, batch["start_positions"])
        end_B = cross_entropy(end_logits_BxL, batch["end_positions"])
        loss_sum = jnp.sum((start_B + end_B) / 2 * weights_B)
        return loss_sum / jnp.maximum(counts["count"], 1.0), {"loss_sum": loss_sum, "count": jnp.sum(weights_B)}

    def eval_outputs(params: Any, batch: dict) -> dict[str, jax.Array]:
        start_logits_BxL, end_logits_BxL = _logits(model, params, batch, None)[:2]
        return {"start_logits": start_logits_BxL.astype(jnp.float32), "end_logits": end_logits_BxL.astype(jnp.float32)}

    return Task(counts=counts, loss=loss, eval_outputs=eval_outputs, per_row_eval=True)
