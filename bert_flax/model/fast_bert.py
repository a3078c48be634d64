"""`model.impl=fast`: BERT pre-training written directly in JAX on transformers' FlaxBertForPreTraining tree.

It reads exactly the parameters HF's module holds (`bert/embeddings/...`, `bert/encoder/layer/{i}/...`,
`bert/pooler`, `cls/...`), so checkpoints, `final/`, export and fine-tuning see no difference. What
differs is how the step computes: attention through `jax.nn.dot_product_attention` (on a GPU in half
precision, cuDNN's fused kernel with the padding given as key lengths: no B × H × L × L probabilities
in memory; XLA elsewhere), explicit probabilities only when attention dropout asks for them, optional
remat per layer, and optionally the layers under `jax.lax.scan` (their parameters stacked inside the
step, so the tree outside stays HF's).

Packed rows (more than one example slot, `cls_positions` [B, E > 1]) attend block-diagonally: a token
sees only the tokens of its own example (`segment_ids`); positions restart per example (`position_ids`)
and the pooler runs on every example's [CLS], so each example gets the logits it would get alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from transformers import BertConfig
from transformers.modeling_flax_utils import ACT2FN

Params = dict[str, Any]
REMAT_POLICIES: dict[str, Callable | None] = {
    "full": None,  # save nothing inside a layer
    # Keep the projection and FFN matmuls (no batch dims); recompute attention scores and elementwise work.
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class FastOptions:
    """How the fast model computes; `attention_dropout` is the resolved rate (not null)."""

    dtype: Any = jnp.float32
    attention_dropout: float = 0.1
    remat: str = "none"  # none / full / dots
    scan_layers: bool = False


def attention_implementation(backend: str, dtype: Any, dropout_rate: float) -> str:
    """cudnn only on GPU, in bfloat16/float16, without attention dropout; xla everywhere else."""
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    return "cudnn" if backend == "gpu" and half and dropout_rate == 0.0 else "xla"


def _dense(p: Params, x: jax.Array, dtype: Any) -> jax.Array:
    """x @ kernel + bias in the compute dtype (parameters are float32), as flax's nn.Dense(dtype=...)."""
    out = x.astype(dtype) @ p["kernel"].astype(dtype)
    return out + p["bias"].astype(dtype) if "bias" in p else out


def _layer_norm(p: Params, x: jax.Array, eps: float, dtype: Any) -> jax.Array:
    """LayerNorm with float32 statistics from one pass (E[x²] − E[x]², as flax), output in the compute dtype."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.maximum(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) - jnp.square(mean), 0.0)
    y = (x32 - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]
    return y.astype(dtype)


def _dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class Visible:
    """Which keys a query sees: the real tokens of its row (`segments_BxL` None: one example per row), or
    only those of its own example (`segments_BxL`: 1..E per token, 0 at padding)."""

    mask_BxL: jax.Array
    segments_BxL: jax.Array | None = None

    def allowed(self) -> jax.Array:
        """bool [B, 1, 1, L] (real keys) or [B, 1, L, L] (keys of the query's own example)."""
        if self.segments_BxL is None:
            return (self.mask_BxL > 0)[:, None, None, :]
        segments_BxL = self.segments_BxL
        same_BxLxL = (segments_BxL[:, :, None] == segments_BxL[:, None, :]) & (segments_BxL[:, None, :] > 0)
        return same_BxLxL[:, None]

    def bias(self, dtype: Any) -> jax.Array:
        """The additive bias of `allowed` (HF's attention bias: 0 where seen, the dtype's minimum elsewhere).
        Added to the scores it needs no B × N × L × L boolean mask (which `where` would keep for the
        backward pass); packed, it is [B, 1, L, L], shared by the heads."""
        return jnp.where(self.allowed(), 0.0, jnp.finfo(dtype).min).astype(dtype)


def _explicit_attention(
    q_BxLxNxD: jax.Array, k_BxLxNxD: jax.Array, v_BxLxNxD: jax.Array, visible: Visible, rate: float, key: jax.Array
) -> jax.Array:
    """Attention with dropout on the probabilities: the B × N × L × L matrix is materialised."""
    q_BxLxNxD = q_BxLxNxD * jnp.asarray(q_BxLxNxD.shape[-1] ** -0.5, q_BxLxNxD.dtype)
    scores_BxNxLxL = jnp.einsum("bqnd,bknd->bnqk", q_BxLxNxD, k_BxLxNxD, preferred_element_type=jnp.float32)
    scores_BxNxLxL = scores_BxNxLxL + visible.bias(jnp.float32)
    probs_BxNxLxL = _dropout(jax.nn.softmax(scores_BxNxLxL, axis=-1), rate, key).astype(v_BxLxNxD.dtype)
    return jnp.einsum("bnqk,bknd->bqnd", probs_BxNxLxL, v_BxLxNxD)


def _attention(
    q_BxLxNxD: jax.Array, k_BxLxNxD: jax.Array, v_BxLxNxD: jax.Array, visible: Visible, rate: float, key: Any
) -> jax.Array:
    if key is not None and rate > 0.0:
        return _explicit_attention(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, visible, rate, key)
    implementation = attention_implementation(jax.default_backend(), q_BxLxNxD.dtype, 0.0)
    if implementation == "cudnn" and visible.segments_BxL is None:  # right padding: a key length per row
        lengths_B = jnp.sum(visible.mask_BxL > 0, axis=-1, dtype=jnp.int32)
        return jax.nn.dot_product_attention(
            q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, key_value_seq_lengths=lengths_B, implementation="cudnn"
        )
    if implementation == "cudnn":  # block-diagonal: cuDNN takes it as a boolean mask (turned into its own bias)
        return jax.nn.dot_product_attention(
            q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask=visible.allowed(), implementation="cudnn"
        )
    bias = visible.bias(q_BxLxNxD.dtype)  # any mask, exactly as HF's attention bias
    return jax.nn.dot_product_attention(q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, bias=bias, implementation="xla")


def _layer(
    p: Params, hidden_BxLxH: jax.Array, visible: Visible, key: Any, config: BertConfig, options: FastOptions
) -> jax.Array:
    """One encoder layer on `bert/encoder/layer/{i}`'s parameters (post-LayerNorm, like BERT)."""
    dtype, eps, rate = options.dtype, config.layer_norm_eps, config.hidden_dropout_prob
    keys = [None] * 3 if key is None else list(jax.random.split(key, 3))
    batch, length, _ = hidden_BxLxH.shape
    heads = config.num_attention_heads
    split = lambda x: x.reshape(batch, length, heads, -1)  # noqa: E731
    attn = p["attention"]
    q, k, v = (split(_dense(attn["self"][name], hidden_BxLxH, dtype)) for name in ("query", "key", "value"))
    context_BxLxH = _attention(q, k, v, visible, options.attention_dropout, keys[0]).reshape(batch, length, -1)
    attended = _dropout(_dense(attn["output"]["dense"], context_BxLxH, dtype), rate, keys[1])
    attended_BxLxH = _layer_norm(attn["output"]["LayerNorm"], attended + hidden_BxLxH, eps, dtype)
    inner_BxLxF = ACT2FN[config.hidden_act](_dense(p["intermediate"]["dense"], attended_BxLxH, dtype))
    out = _dropout(_dense(p["output"]["dense"], inner_BxLxF, dtype), rate, keys[2])
    return _layer_norm(p["output"]["LayerNorm"], out + attended_BxLxH, eps, dtype)


def _encoder(
    layers: Params, hidden_BxLxH: jax.Array, visible: Visible, key: Any, config: BertConfig, options: FastOptions
) -> jax.Array:
    """All layers, one after another or under `scan` on their stacked parameters; remat per layer."""

    def layer(h: jax.Array, p_and_key: tuple) -> tuple[jax.Array, None]:
        p, layer_key = p_and_key
        return _layer(p, h, visible, layer_key, config, options), None

    if options.remat != "none":
        layer = jax.checkpoint(layer, policy=REMAT_POLICIES[options.remat])
    per_layer = [layers[str(i)] for i in range(config.num_hidden_layers)]
    keys = None if key is None else jax.random.split(key, len(per_layer))
    if options.scan_layers:
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *per_layer)
        return jax.lax.scan(layer, hidden_BxLxH, (stacked, keys))[0]
    for i, p in enumerate(per_layer):
        hidden_BxLxH = layer(hidden_BxLxH, (p, None if keys is None else keys[i]))[0]
    return hidden_BxLxH


def _embed(p: Params, batch: dict[str, jax.Array], key: Any, config: BertConfig, dtype: Any) -> jax.Array:
    """Word + token type + position embeddings; positions are `position_ids` (restarting per example)."""
    summed_BxLxH = (
        p["word_embeddings"]["embedding"].astype(dtype)[batch["input_ids"]]
        + p["token_type_embeddings"]["embedding"].astype(dtype)[batch["token_type_ids"]]
        + p["position_embeddings"]["embedding"].astype(dtype)[batch["position_ids"]]
    )
    hidden_BxLxH = _layer_norm(p["LayerNorm"], summed_BxLxH, config.layer_norm_eps, dtype)
    return _dropout(hidden_BxLxH, config.hidden_dropout_prob, key)


def _mlm_head(params: Params, gathered_BxPxH: jax.Array, config: BertConfig, dtype: Any) -> jax.Array:
    """`cls/predictions`: transform, then the (tied) word embeddings as the decoder, plus its bias."""
    head = params["cls"]["predictions"]
    transform = head["transform"]
    hidden = ACT2FN[config.hidden_act](_dense(transform["dense"], gathered_BxPxH, dtype))
    hidden = _layer_norm(transform["LayerNorm"], hidden, config.layer_norm_eps, dtype)
    if config.tie_word_embeddings:
        decoder_HxV = params["bert"]["embeddings"]["word_embeddings"]["embedding"].T
    else:
        decoder_HxV = head["decoder"]["kernel"]
    return hidden @ decoder_HxV.astype(dtype) + head["bias"].astype(dtype)


def pretraining_logits(
    params: Params,
    batch: dict[str, jax.Array],
    objectives: tuple[str, ...],
    config: BertConfig,
    options: FastOptions,
    dropout_rng: jax.Array | None = None,
) -> tuple[jax.Array | None, jax.Array | None]:
    """(MLM logits [B, P, V] at `masked_lm_positions`, NSP logits [B, E, 2] at every example's [CLS]) in the
    compute dtype; dropout is on when `dropout_rng` is given. E = 1 (one example per row) keeps the padding-only
    attention path; E > 1 (packed rows, static) attends block-diagonally."""
    bert = params["bert"]
    embed_key = encoder_key = None
    if dropout_rng is not None:
        embed_key, encoder_key = jax.random.split(dropout_rng)
    cls_positions_BxE = batch["cls_positions"]
    packed = cls_positions_BxE.shape[1] > 1
    visible = Visible(batch["attention_mask"], batch["segment_ids"] if packed else None)
    hidden_BxLxH = _embed(bert["embeddings"], batch, embed_key, config, options.dtype)
    hidden_BxLxH = _encoder(bert["encoder"]["layer"], hidden_BxLxH, visible, encoder_key, config, options)
    mlm_logits_BxPxV = nsp_logits_BxEx2 = None
    if "mlm" in objectives:
        positions_BxP = batch["masked_lm_positions"]
        gathered_BxPxH = jnp.take_along_axis(hidden_BxLxH, positions_BxP[:, :, None], axis=1)
        mlm_logits_BxPxV = _mlm_head(params, gathered_BxPxH, config, options.dtype)
    if "nsp" in objectives:
        cls_BxExH = jnp.take_along_axis(hidden_BxLxH, cls_positions_BxE[:, :, None], axis=1)
        pooled_BxExH = jnp.tanh(_dense(bert["pooler"]["dense"], cls_BxExH, options.dtype))
        nsp_logits_BxEx2 = _dense(params["cls"]["seq_relationship"], pooled_BxExH, options.dtype)
    return mlm_logits_BxPxV, nsp_logits_BxEx2
