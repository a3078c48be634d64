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
from bert_flax.data.pipeline import one_per_row, pack_rows
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


def one_example_rows(lengths: list[int], seed: int, predictions: int = P) -> dict[str, np.ndarray]:
    """Rows of one example each (right padding to L, two segments), prediction slots at real tokens: the
    arrays `mask_examples` makes, before `pack_rows`."""
    rng = np.random.default_rng(seed)
    count = len(lengths)
    mask_NxL = (np.arange(L)[None] < np.array(lengths)[:, None]).astype(np.int32)
    real_NxP = np.arange(predictions)[None] < np.minimum(np.array(lengths)[:, None] // 3, predictions)
    positions_NxP = np.sort(rng.integers(1, np.array(lengths)[:, None] - 1, (count, predictions)), axis=1)
    return {
        "input_ids": rng.integers(5, VOCAB, (count, L)).astype(np.int32) * mask_NxL,
        "token_type_ids": (np.arange(L)[None] >= np.array(lengths)[:, None] // 2).astype(np.int32) * mask_NxL,
        "attention_mask": mask_NxL,
        "masked_lm_positions": (positions_NxP * real_NxP).astype(np.int32),
        "masked_lm_ids": (rng.integers(5, VOCAB, (count, predictions)) * real_NxP).astype(np.int32),
        "masked_lm_weights": real_NxP.astype(np.float32),
        "next_sentence_labels": rng.integers(0, 2, count).astype(np.int32),
    }


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    """Right padding (lengths 16, 11, 6), two segments, prediction slots at real tokens."""
    return pack_rows(one_example_rows([L, 11, 6], seed=0), one_per_row(B), 1, P, pad_id=0)


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


# Seven examples in three rows of 16 (one row not full), and the same examples one per row.
PACKED_LENGTHS, PACKED_ROWS = [9, 7, 6, 5, 4, 8, 3], np.array([0, 2, 5, 7])
E = 3


@pytest.fixture(scope="module")
def packed_and_alone() -> tuple[dict, dict]:
    examples = one_example_rows(PACKED_LENGTHS, seed=1, predictions=3)
    packed = pack_rows(examples, PACKED_ROWS, E, 2 * P, pad_id=0)
    return packed, pack_rows(examples, one_per_row(len(PACKED_LENGTHS)), 1, 3, pad_id=0)


@pytest.mark.parametrize("scan_layers, remat", [(False, "none"), (True, "dots")])
def test_packed_examples_get_their_own_logits_and_loss(model, packed_and_alone, scan_layers, remat) -> None:
    """Block-diagonal attention, restarted positions, the pooler at every [CLS]: each example of a packed row
    has the logits it has alone, and the packed batch the loss (and gradient) of the examples one per row."""
    packed, alone = packed_and_alone
    options = dataclasses.replace(HF, impl="fast", scan_layers=scan_layers, remat=remat)
    assert packed["attention_mask"].sum(axis=1).tolist() == [16, 15, 11]  # two full rows, padding in one
    (mlm_BxPxV, nsp_BxEx2), grads = _loss_and_grads(model, packed, options)
    (alone_mlm_NxPxV, alone_nsp_Nx1x2), alone_grads = _loss_and_grads(model, alone, options)
    real_BxE = packed["example_weights"] > 0
    np.testing.assert_allclose(np.asarray(nsp_BxEx2)[real_BxE], np.asarray(alone_nsp_Nx1x2)[:, 0], atol=ATOL, rtol=0)
    predicted_BxP, alone_predicted_NxP = packed["masked_lm_weights"] > 0, alone["masked_lm_weights"] > 0
    assert predicted_BxP.sum() == alone_predicted_NxP.sum() > 0
    np.testing.assert_allclose(
        np.asarray(mlm_BxPxV)[predicted_BxP], np.asarray(alone_mlm_NxPxV)[alone_predicted_NxP], atol=ATOL, rtol=0
    )
    loss = float(objective(metric_sums(mlm_BxPxV, nsp_BxEx2, packed), batch_counts(packed)))
    alone_loss = float(objective(metric_sums(alone_mlm_NxPxV, alone_nsp_Nx1x2, alone), batch_counts(alone)))
    assert loss == pytest.approx(alone_loss, abs=ATOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=ATOL, rtol=0), grads, alone_grads)


@pytest.mark.parametrize("attention_dropout", [0.0, 0.2])
def test_packed_examples_do_not_see_each_other(model, packed_and_alone, attention_dropout) -> None:
    """Changing one example changes only its own logits (no cross-contamination), also with dropout on
    (the explicit attention path; the same dropout key for both)."""
    packed, _ = packed_and_alone
    options = dataclasses.replace(HF, impl="fast", attention_dropout=attention_dropout)
    rng = jax.random.PRNGKey(5) if attention_dropout else None
    changed = dict(packed, input_ids=packed["input_ids"].copy())
    changed["input_ids"][0, 10:15] = 7  # inside row 0's second example (positions 9..15)
    logits_fn = jax.jit(lambda b: pretraining_logits(model.model, model.params, b, BOTH, rng, options))
    (_, nsp), (_, changed_nsp) = logits_fn(packed), logits_fn(changed)
    difference_BxE = np.abs(np.asarray(nsp) - np.asarray(changed_nsp)).max(axis=-1)
    assert difference_BxE[0, 1] > 1e-4
    difference_BxE[0, 1] = 0.0
    assert difference_BxE.max() == 0.0


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
