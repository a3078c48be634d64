"""model.impl=fast against transformers' module on the same parameters: logits and gradients, scan, remat."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smoke_config
from transformers import BertConfig, FlaxBertForPreTraining

from bert_flax.config import ModelConfig
from bert_flax.model.fast_bert import attention_implementation
from bert_flax.model.losses import batch_counts, metric_sums, objective
from bert_flax.model.pretraining import PretrainingModel, init_params, pretraining_logits
from bert_flax.pretrain import pretrain
from bert_flax.run.metrics import read_metrics

B, L, P, VOCAB = 3, 16, 4, 100
BOTH = ("mlm", "nsp")
# Never loosen: float32, the same parameters, dropout off; observed differences are ~1e-6.
ATOL = 1e-5
HF = ModelConfig(init="", preset="tiny")


@pytest.fixture(scope="module")
def model() -> PretrainingModel:
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=L, initializer_range=0.2,  # peaked attention: query/key gradients are not ~0
    )
    module = FlaxBertForPreTraining(config, _do_init=False)
    return PretrainingModel(module, init_params(module, seed=0))


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    """Right padding (lengths 16, 11, 6), two segments, prediction slots at real tokens."""
    rng = np.random.default_rng(0)
    mask_BxL = (np.arange(L)[None] < np.array([[L], [11], [6]])).astype(np.int32)
    return {
        "input_ids": rng.integers(5, VOCAB, (B, L)).astype(np.int32) * mask_BxL,
        "token_type_ids": (np.arange(L)[None] >= 4).astype(np.int32) * mask_BxL,
        "attention_mask": mask_BxL,
        "masked_lm_positions": rng.integers(0, 6, (B, P)).astype(np.int32),
        "masked_lm_ids": rng.integers(5, VOCAB, (B, P)).astype(np.int32),
        "masked_lm_weights": np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]], np.float32),
        "next_sentence_labels": np.array([0, 1, 1], np.int32),
    }


def _loss_and_grads(model: PretrainingModel, batch: dict, options: ModelConfig) -> tuple:
    """Both heads' logits and the gradient of the training loss (mean MLM + mean NSP cross-entropy)."""

    def loss(params: dict) -> tuple[jax.Array, tuple]:
        logits = pretraining_logits(model.model, params, batch, BOTH, None, options)
        return objective(metric_sums(*logits, batch), batch_counts(batch)), logits

    grads, logits = jax.jit(jax.grad(loss, has_aux=True))(model.params)
    return logits, grads


@pytest.fixture(scope="module")
def reference(model: PretrainingModel, batch: dict) -> tuple:
    return _loss_and_grads(model, batch, HF)


@pytest.mark.parametrize(
    "impl, scan_layers, remat",
    [
        ("fast", False, "none"),
        ("fast", True, "dots"),  # remat=full (scanned) runs end to end below
        ("hf", False, "full"),  # transformers' gradient_checkpointing
    ],
)
def test_logits_and_gradients_match_hf(model, batch, reference, impl, scan_layers, remat) -> None:
    options = dataclasses.replace(HF, impl=impl, scan_layers=scan_layers, remat=remat)
    (mlm_BxPxV, nsp_Bx2), grads = _loss_and_grads(model, batch, options)
    (ref_mlm_BxPxV, ref_nsp_Bx2), ref_grads = reference
    np.testing.assert_allclose(mlm_BxPxV, ref_mlm_BxPxV, atol=ATOL, rtol=0)
    np.testing.assert_allclose(nsp_Bx2, ref_nsp_Bx2, atol=ATOL, rtol=0)
    assert jax.tree.structure(grads) == jax.tree.structure(model.params)  # the HF tree, even when scanned
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
        ref = ref_grads
        for key in path:
            ref = ref[key.key]
        np.testing.assert_allclose(grad, ref, atol=ATOL, rtol=0, err_msg=jax.tree_util.keystr(path))
    tiny = [jax.tree_util.keystr(p) for p, g in jax.tree_util.tree_leaves_with_path(grads) if jnp.abs(g).max() < 1e-3]
    assert all("['key']['bias']" in path for path in tiny), tiny  # softmax ignores a key bias: only it is ~0


def test_scan_gives_the_unrolled_layers_with_dropout_on(model, batch, reference) -> None:
    """Same keys per layer: scanned and unrolled layers drop the same units, attention dropout included."""
    rng = jax.random.PRNGKey(3)
    options = dataclasses.replace(HF, impl="fast", attention_dropout=0.2)
    scanned_options = dataclasses.replace(options, scan_layers=True)

    def both(params: dict) -> tuple:  # one compile for the two
        return tuple(pretraining_logits(model.model, params, batch, BOTH, rng, o) for o in (options, scanned_options))

    unrolled, scanned = jax.jit(both)(model.params)
    np.testing.assert_allclose(scanned[0], unrolled[0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(scanned[1], unrolled[1], atol=ATOL, rtol=0)
    assert float(jnp.max(jnp.abs(unrolled[0] - reference[0][0]))) > 1e-2  # dropout was on


@pytest.mark.parametrize(
    "backend, dtype, rate, expected",
    [
        ("gpu", jnp.bfloat16, 0.0, "cudnn"),
        ("gpu", jnp.float16, 0.0, "cudnn"),
        ("gpu", jnp.float32, 0.0, "xla"),  # cuDNN flash attention is half precision only
        ("gpu", jnp.bfloat16, 0.1, "xla"),  # no dropout inside the fused kernel
        ("cpu", jnp.bfloat16, 0.0, "xla"),
        ("tpu", jnp.bfloat16, 0.0, "xla"),
    ],
)
def test_attention_implementation(backend, dtype, rate, expected) -> None:
    assert attention_implementation(backend, dtype, rate) == expected


def test_fast_scanned_run_saves_the_hf_tree(smoke_run, corpus_path, smoke_cache, tmp_path) -> None:
    """A fast, scanned, rematerialised run: metrics every 2 steps, and a final/ that transformers loads with
    exactly the tree of an hf run."""
    overrides = ("model.impl=fast", "model.scan_layers=true", "model.remat=full", "log.every=2", "train.steps=3")
    overrides += ("checkpoint.every=3", "eval.every=3")
    result = pretrain(smoke_config(corpus_path, smoke_cache, *overrides), tmp_path / "fast", show_progress=False)
    assert result.finished and np.isfinite(result.train["loss"]) and np.isfinite(result.eval["mlm_loss"])
    assert [r["step"] for r in read_metrics(tmp_path / "fast", "train")] == [2, 3]
    fast = FlaxBertForPreTraining.from_pretrained(tmp_path / "fast" / "final").params
    hf = FlaxBertForPreTraining.from_pretrained(smoke_run / "final").params
    assert jax.tree.map(np.shape, fast) == jax.tree.map(np.shape, hf)
