"""Tests for bert_flax.model.pretraining: the HF parameter tree, the dtype policy, gathered heads, checkpoint loading."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file
from transformers import BertConfig, FlaxBertForPreTraining

from bert_flax.config import Config, DataConfig, ModelConfig, TrainConfig
from bert_flax.errors import UserError
from bert_flax.hub import hub_reachable
from bert_flax.interop.model_init import build_model
from bert_flax.model.pretraining import PretrainingModel, preset_config, pretraining_logits

VOCAB = 1000
B, L, P = 3, 16, 5
BOTH = ("mlm", "nsp")
# pretraining_logits, compiled once per (model, objectives): faster on CPU than op-by-op.
logits_fn = jax.jit(pretraining_logits, static_argnums=(0, 3))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may probe the network: no hub, and no cached answer from before."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()


def tiny_config(**model: str) -> Config:
    return Config(model=ModelConfig(**{"init": "", "preset": "tiny", **model}), data=DataConfig(max_seq_len=L))


@pytest.fixture(scope="module")
def tiny() -> PretrainingModel:
    return build_model(tiny_config(), VOCAB)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PretrainingModel]:
    """A saved tiny model with all heads. Seed 1: a head saved from the very init that loading draws
    for missing weights (seed 0) is indistinguishable from a missing one."""
    path = tmp_path_factory.mktemp("tiny_checkpoint")
    saved = build_model(dataclasses.replace(tiny_config(), train=TrainConfig(seed=1)), VOCAB)
    saved.model.save_pretrained(path, params=saved.params)
    return path, saved


@pytest.fixture(scope="module")
def batch() -> dict[str, jnp.ndarray]:
    """Random ids with right padding, two segments, and padding prediction slots (position 0, weight 0)."""
    rng = np.random.default_rng(0)
    lengths, predictions = (L, 11, 8), (P, P, 3)
    positions_BxP = np.zeros((B, P), np.int32)
    for row, (length, count) in enumerate(zip(lengths, predictions)):
        positions_BxP[row, :count] = np.sort(rng.choice(np.arange(1, length - 1), count, replace=False))
    weights_BxP = (np.arange(P)[None, :] < np.array(predictions)[:, None]).astype(np.float32)
    lengths_B1, j_1xL = np.array(lengths)[:, None], np.arange(L)[None, :]
    return {
        "input_ids": jnp.asarray(np.where(j_1xL < lengths_B1, rng.integers(5, VOCAB, (B, L)), 0), jnp.int32),
        "token_type_ids": jnp.asarray((j_1xL >= lengths_B1 // 2) & (j_1xL < lengths_B1), jnp.int32),
        "attention_mask": jnp.asarray(j_1xL < lengths_B1, jnp.int32),
        "segment_ids": jnp.asarray(j_1xL < lengths_B1, jnp.int32),
        "position_ids": jnp.asarray(np.where(j_1xL < lengths_B1, j_1xL, 0), jnp.int32),
        "masked_lm_positions": jnp.asarray(positions_BxP, jnp.int32),
        "masked_lm_ids": jnp.asarray(rng.integers(5, VOCAB, (B, P)), jnp.int32),
        "masked_lm_weights": jnp.asarray(weights_BxP),
        "cls_positions": jnp.zeros((B, 1), jnp.int32),
        "next_sentence_labels": jnp.asarray([[0], [1], [0]], jnp.int32),
        "example_weights": jnp.ones((B, 1), jnp.float32),
    }


def test_preset_builds_hf_parameter_tree(tiny: PretrainingModel) -> None:
    reference = FlaxBertForPreTraining(preset_config("tiny", VOCAB), _do_init=False).params_shape_tree
    shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)  # noqa: E731
    assert jax.tree.structure(tiny.params) == jax.tree.structure(reference)
    assert shapes(tiny.params) == shapes(reference)
    config = tiny.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (2, 128, 2)
    assert (config.intermediate_size, config.vocab_size, config.max_position_embeddings) == (512, VOCAB, 512)
    assert tiny.initialized_heads == ()


def test_bfloat16_computes_in_bf16_with_float32_params(tiny: PretrainingModel, batch: dict) -> None:
    bf16 = build_model(tiny_config(dtype="bfloat16"), VOCAB)
    assert bf16.model.module.dtype == jnp.bfloat16
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16.params))
    # Same seed, same float32 parameters: only the compute dtype differs.
    jax.tree.map(np.testing.assert_array_equal, bf16.params, tiny.params)
    mlm16, nsp16 = logits_fn(bf16.model, bf16.params, batch, BOTH)
    mlm32, nsp32 = logits_fn(tiny.model, tiny.params, batch, BOTH)
    assert mlm16.dtype == nsp16.dtype == jnp.float32
    jaxpr = str(jax.make_jaxpr(pretraining_logits, static_argnums=(0, 3))(bf16.model, bf16.params, batch, BOTH))
    assert "dot_general" in jaxpr and "bf16[3,16,128]" in jaxpr
    # bf16 rounding shows in the logits, within bf16's precision.
    assert not np.array_equal(mlm16, mlm32)
    np.testing.assert_allclose(mlm16, mlm32, atol=0.1)
    np.testing.assert_allclose(nsp16, nsp32, atol=0.1)


def test_gathered_logits_equal_full_forward(tiny: PretrainingModel, batch: dict) -> None:
    mlm_BxPxV, nsp_Bx1x2 = logits_fn(tiny.model, tiny.params, batch, BOTH)
    full = tiny.model(
        batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], params=tiny.params, train=False
    )
    positions_BxPx1 = np.asarray(batch["masked_lm_positions"])[:, :, None]
    expected_BxPxV = np.take_along_axis(np.asarray(full.prediction_logits), positions_BxPx1, axis=1)
    assert mlm_BxPxV.shape == (B, P, VOCAB) and nsp_Bx1x2.shape == (B, 1, 2)  # one example slot per row
    np.testing.assert_allclose(mlm_BxPxV, expected_BxPxV, atol=1e-5, rtol=0)
    np.testing.assert_allclose(nsp_Bx1x2[:, 0], full.seq_relationship_logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("objectives", [("mlm",), ("nsp",)])
def test_untrained_objective_gives_none(tiny: PretrainingModel, batch: dict, objectives: tuple[str, ...]) -> None:
    mlm, nsp = logits_fn(tiny.model, tiny.params, batch, objectives)
    assert (mlm is None) == ("mlm" not in objectives) and (nsp is None) == ("nsp" not in objectives)
    both = logits_fn(tiny.model, tiny.params, batch, BOTH)
    for got, want in zip((mlm, nsp), both):
        if got is not None:
            np.testing.assert_array_equal(got, want)


def test_dropout_only_with_rng(tiny: PretrainingModel, batch: dict) -> None:
    logits = lambda rng: logits_fn(tiny.model, tiny.params, batch, BOTH, rng)[0]  # noqa: E731
    np.testing.assert_array_equal(logits(None), logits(None))
    np.testing.assert_array_equal(logits(jax.random.PRNGKey(1)), logits(jax.random.PRNGKey(1)))
    assert not np.allclose(logits(jax.random.PRNGKey(1)), logits(None))
    assert not np.allclose(logits(jax.random.PRNGKey(1)), logits(jax.random.PRNGKey(2)))


def test_own_checkpoint_loads_with_all_heads(
    checkpoint: tuple[Path, PretrainingModel], caplog: pytest.LogCaptureFixture
) -> None:
    path, saved = checkpoint
    with caplog.at_level(logging.WARNING, logger="bert_flax.interop.model_init"):
        loaded = build_model(tiny_config(init=str(path)), VOCAB)
    assert loaded.initialized_heads == ()
    assert not [r for r in caplog.records if r.name == "bert_flax.interop.model_init"]
    jax.tree.map(np.testing.assert_array_equal, loaded.params, saved.params)


def test_minilm_loads_encoder_and_initializes_missing_heads(minilm_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bert_flax.interop.model_init"):
        loaded = build_model(Config(model=ModelConfig(init=minilm_dir)), 30522)
    weights = load_file(os.path.join(minilm_dir, "model.safetensors"))
    # MiniLM is a BertModel: encoder and pooler are loaded, the pre-training heads are not.
    assert sorted({k.split(".")[0] for k in weights}) == ["embeddings", "encoder", "pooler"]
    assert loaded.initialized_heads == ("cls/predictions", "cls/seq_relationship")
    records = [r for r in caplog.records if r.name == "bert_flax.interop.model_init"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert "cls/predictions, cls/seq_relationship" in records[0].getMessage()
    assert "pooler" not in records[0].getMessage()

    bert = loaded.params["bert"]
    assert loaded.config.hidden_size == 384 and loaded.config.num_hidden_layers == 6
    np.testing.assert_array_equal(
        bert["embeddings"]["word_embeddings"]["embedding"], weights["embeddings.word_embeddings.weight"]
    )
    np.testing.assert_array_equal(
        bert["encoder"]["layer"]["5"]["attention"]["self"]["query"]["kernel"],
        weights["encoder.layer.5.attention.self.query.weight"].T,
    )
    np.testing.assert_array_equal(bert["pooler"]["dense"]["kernel"], weights["pooler.dense.weight"].T)
    np.testing.assert_array_equal(bert["pooler"]["dense"]["bias"], weights["pooler.dense.bias"])
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(loaded.params))


def test_checkpoint_vocab_mismatch_is_user_error(checkpoint: tuple[Path, PretrainingModel]) -> None:
    path, _ = checkpoint
    with pytest.raises(UserError, match=f"tokenizer has 2000 tokens but model.init={path} has {VOCAB}"):
        build_model(tiny_config(init=str(path)), 2000)


def test_unknown_name_offline_points_to_scratch_config() -> None:
    with pytest.raises(UserError, match="hub is unreachable.*configs/meditations_scratch.yaml"):
        build_model(tiny_config(init="no-such-org/no-such-bert"), VOCAB)


def test_directory_without_checkpoint_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"{tmp_path} is not a model: no config.json"):
        build_model(tiny_config(init=str(tmp_path)), VOCAB)


def test_unknown_preset_is_user_error() -> None:
    with pytest.raises(UserError, match="model.preset must be one of tiny, mini"):
        preset_config("huge", VOCAB)
    with pytest.raises(UserError, match="model.preset"):
        ModelConfig(init="", preset="huge")


def test_sequences_longer_than_the_checkpoint_positions(tmp_path: Path) -> None:
    """Checked where the checkpoint is loaded (the config reads no files)."""
    small = build_model(tiny_config(), VOCAB)
    short = FlaxBertForPreTraining(BertConfig.from_dict({**small.config.to_dict(), "max_position_embeddings": L}))
    short.save_pretrained(tmp_path / "short")
    config = dataclasses.replace(tiny_config(init=str(tmp_path / "short")), data=DataConfig(max_seq_len=2 * L))
    with pytest.raises(UserError, match=rf"data.max_seq_len={2 * L} exceeds the {L} positions of model.init="):
        build_model(config, VOCAB)
    assert build_model(dataclasses.replace(config, data=DataConfig(max_seq_len=L)), VOCAB).config.max_position_embeddings == L
