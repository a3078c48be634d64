"""transformers' FlaxBertForPreTraining: a preset's config and random init, and its forward pass.

The module and its parameter tree are exactly Hugging Face's, so `save_pretrained` and every
tool that reads HF BERT weights work on what we train. Parameters are always float32;
`model.dtype` only sets the compute dtype. `pretraining_logits` runs either HF's module
(`model.impl=hf`) or fast_bert.py's own step on the same tree (`model.impl=fast`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict
from transformers import BertConfig, FlaxBertForPreTraining

from bert_flax.config import MODEL_PRESETS, PRESET_MAX_POSITIONS, Config, ModelConfig
from bert_flax.errors import UserError
from bert_flax.model import fast_bert
from bert_flax.model.fast_bert import FastOptions

Params = dict[str, Any]
# Parameter groups that a checkpoint without pre-training heads (a BertModel) lacks.
HEAD_GROUPS = ("cls/predictions", "cls/seq_relationship", "bert/pooler")


@dataclasses.dataclass
class PretrainingModel:
    """The HF wrapper (config, module, save_pretrained) and float32 parameters kept outside it."""

    model: FlaxBertForPreTraining  # built with _do_init=False: parameters live in `params`
    params: Params
    initialized_heads: tuple[str, ...] = ()  # head groups that started from random init

    @property
    def config(self) -> BertConfig:
        return self.model.config


def compute_dtype(name: str) -> jnp.dtype:
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def preset_config(preset: str, vocab_size: int) -> BertConfig:
    """BertConfig of a Google BERT size: heads = hidden / 64, FFN = 4 × hidden."""
    if preset not in MODEL_PRESETS:
        raise UserError(f"model.preset must be one of {', '.join(MODEL_PRESETS)}; got {preset!r}")
    sizes = MODEL_PRESETS[preset]
    hidden = sizes["hidden_size"]
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=sizes["num_hidden_layers"],
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
        max_position_embeddings=PRESET_MAX_POSITIONS,
    )


def init_params(model: FlaxBertForPreTraining, seed: int, sharding: jax.sharding.Sharding | None = None) -> Params:
    """Random parameters, created shape-first directly with `sharding` (replicated by default)."""

    def init(rng: jax.Array) -> Params:
        return model.init_weights(rng, (1, 1))

    rng = jax.random.PRNGKey(seed)
    if sharding is None:
        return jax.jit(init)(rng)
    shapes = jax.eval_shape(init, rng)
    return jax.jit(init, out_shardings=jax.tree.map(lambda _: sharding, shapes))(rng)


def from_preset(config: Config, vocab_size: int) -> PretrainingModel:
    """A `model.preset` BERT with random parameters (seeded by train.seed)."""
    bert_config = preset_config(config.model.preset, vocab_size)
    model = FlaxBertForPreTraining(bert_config, dtype=compute_dtype(config.model.dtype), _do_init=False)
    return PretrainingModel(model, init_params(model, config.train.seed))


def initialized_groups(loaded: Params, random: Params) -> tuple[str, ...]:
    """Head groups whose loaded values are all exactly the random init: the checkpoint lacked them.

    All, not any: a loaded leaf may equal its init (MiniLM's pooler bias is all zeros, like a fresh one).
    """
    loaded_flat, random_flat = flatten_dict(loaded, sep="/"), flatten_dict(random, sep="/")
    same = {k: np.array_equal(np.asarray(v), np.asarray(random_flat[k])) for k, v in loaded_flat.items()}
    return tuple(g for g in HEAD_GROUPS if all(v for k, v in same.items() if k.startswith(g + "/")))


def check_max_seq_len(max_seq_len: int, bert_config: BertConfig, description: str) -> None:
    """A UserError when sequences are longer than the model has position embeddings."""
    positions = bert_config.max_position_embeddings
    if max_seq_len > positions:
        raise UserError(
            f"data.max_seq_len={max_seq_len} exceeds the {positions} positions of {description}; "
            f"use data.max_seq_len<={positions}"
        )


def _gathered_heads(
    module: Any,
    input_ids_BxL: jax.Array,
    attention_mask_BxL: jax.Array,
    token_type_ids_BxL: jax.Array,
    masked_lm_positions_BxP: jax.Array,
    deterministic: bool,
    mlm: bool,
    nsp: bool,
) -> tuple[jax.Array | None, jax.Array | None]:
    """FlaxBertForPreTrainingModule's forward, with the MLM head applied at the masked positions only."""
    position_ids_BxL = jnp.broadcast_to(jnp.arange(input_ids_BxL.shape[1]), input_ids_BxL.shape)
    hidden_BxLxH, pooled_BxH = module.bert(
        input_ids_BxL,
        attention_mask_BxL,
        token_type_ids_BxL,
        position_ids_BxL,
        None,
        deterministic=deterministic,
        return_dict=False,
    )[:2]
    mlm_logits_BxPxV = nsp_logits_Bx2 = None
    if mlm:
        gathered_BxPxH = jnp.take_along_axis(hidden_BxLxH, masked_lm_positions_BxP[:, :, None], axis=1)
        shared = None
        if module.config.tie_word_embeddings:
            shared = module.bert.variables["params"]["embeddings"]["word_embeddings"]["embedding"]
        mlm_logits_BxPxV = module.cls.predictions(gathered_BxPxH, shared_embedding=shared)
    if nsp:
        nsp_logits_Bx2 = module.cls.seq_relationship(pooled_BxH)
    return mlm_logits_BxPxV, nsp_logits_Bx2


def fast_options(model: FlaxBertForPreTraining, options: ModelConfig) -> FastOptions:
    """`model.impl=fast`'s settings, the attention dropout resolved against the model's config."""
    rate = options.attention_dropout
    return FastOptions(
        dtype=model.dtype,
        attention_dropout=model.config.attention_probs_dropout_prob if rate is None else rate,
        remat=options.remat,
        scan_layers=options.scan_layers,
    )


def _hf_module(model: FlaxBertForPreTraining, options: ModelConfig | None) -> Any:
    """HF's module, with `model.attention_dropout` and `model.remat=full` (gradient_checkpointing) applied;
    the model's own config (the one saved) is not changed."""
    if options is None or (options.attention_dropout is None and options.remat == "none"):
        return model.module
    config = model.config
    if options.attention_dropout is not None:
        config = BertConfig.from_dict({**config.to_dict(), "attention_probs_dropout_prob": options.attention_dropout})
    return type(model.module)(config=config, dtype=model.dtype, gradient_checkpointing=options.remat == "full")


def pretraining_logits(
    model: FlaxBertForPreTraining,
    params: Params,
    batch: dict[str, jax.Array],
    objectives: tuple[str, ...],
    dropout_rng: jax.Array | None = None,
    options: ModelConfig | None = None,
) -> tuple[jax.Array | None, jax.Array | None]:
    """(MLM logits [B, P, V] at `masked_lm_positions`, NSP logits [B, E, 2] at the E example slots of every
    row), float32; None for an objective not trained.

    Dropout is on when `dropout_rng` is given. `options` (config.model) picks the impl, attention
    dropout, remat and scan; None: HF's module as configured. HF's module takes one example per row
    (E = 1: its [CLS] at position 0, positions 0..L-1); packed rows need `model.impl=fast`.
    """
    if options is not None and options.impl == "fast":
        mlm_logits_BxPxV, nsp_logits_BxEx2 = fast_bert.pretraining_logits(
            params, batch, objectives, model.config, fast_options(model, options), dropout_rng
        )
    else:
        if batch["cls_positions"].shape[1] != 1:
            raise ValueError("model.impl=hf takes one example per row; packed rows need model.impl=fast")
        mlm_logits_BxPxV, nsp_logits_Bx2 = _hf_module(model, options).apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            batch["masked_lm_positions"],
            dropout_rng is None,
            "mlm" in objectives,
            "nsp" in objectives,
            rngs={} if dropout_rng is None else {"dropout": dropout_rng},
            method=_gathered_heads,
        )
        nsp_logits_BxEx2 = None if nsp_logits_Bx2 is None else nsp_logits_Bx2[:, None, :]
    as_f32 = lambda x: None if x is None else x.astype(jnp.float32)  # noqa: E731
    return as_f32(mlm_logits_BxPxV), as_f32(nsp_logits_BxEx2)
