"""Checks before numbers (`bert-flax bench --suite`): `fast` and `hf` compute the same loss on one batch,
and cuDNN's fused attention is in a compiled step exactly when `fast` should use it.

Each check is a dict: name, status ("pass", "FAIL" or "not applicable") and detail (what was compared).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import jax
import numpy as np
from transformers import FlaxBertForPreTraining

from bert_flax.bench.synthetic import synthetic_batch
from bert_flax.config import Config
from bert_flax.model.fast_bert import attention_implementation
from bert_flax.model.losses import normalize, pretraining_task
from bert_flax.model.pretraining import PretrainingModel, compute_dtype, fast_options, init_params, preset_config

CUDNN_ATTENTION = "__cudnn$fmha"  # the custom-call targets of cuDNN's fused attention (forward and backward)
# |loss(fast) − loss(hf)| ≤ tolerance × |loss(hf)|: float32 with matmuls at "highest" precision differs only
# in summation order; bfloat16 rounds every activation (8 bits of mantissa) along different paths.
LOSS_TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2}
Check = dict[str, Any]


def attention_kernel(compiled: Any) -> str:
    """"cudnn" when cuDNN's fused attention is in a compiled step's HLO, else "xla"."""
    return "cudnn" if CUDNN_ATTENTION in compiled.as_text() else "xla"


def expected_attention_kernel(config: Config, pretrained: PretrainingModel) -> str:
    """The kernel the trainer's step should contain: cudnn for fast on a GPU in half precision without
    attention dropout, xla otherwise (hf's attention is transformers' own einsums)."""
    if config.model.impl != "fast":
        return "xla"
    rate = fast_options(pretrained.model, config.model).attention_dropout
    return attention_implementation(jax.default_backend(), pretrained.model.dtype, rate)


def _eval_loss(config: Config, model: FlaxBertForPreTraining, params: Any, batch: dict) -> tuple[float, Any]:
    """The loss of one batch without dropout, and the compiled function that computed it."""
    task = pretraining_task(model, config.train.objectives, config.model)
    compiled = jax.jit(task.eval_outputs).lower(params, batch).compile()
    return normalize(compiled(params, batch), config.train.objectives)["loss"], compiled


def loss_agreement(fast: Config, hf: Config, vocab_size: int, batch_size: int) -> list[Check]:
    """`fast` vs `hf` on one synthetic batch of the configs' length, from the same random parameters, in
    float32 (matmuls at "highest" precision) and bfloat16; the bfloat16 fast step's attention kernel too."""
    bert_config = preset_config(fast.model.preset, vocab_size)
    params = init_params(FlaxBertForPreTraining(bert_config, _do_init=False), fast.train.seed)
    one_batch = dataclasses.replace(fast, train=dataclasses.replace(fast.train, batch_size=batch_size))
    batch = synthetic_batch(one_batch, vocab_size, np.random.default_rng(fast.train.seed))
    checks, fast_bf16 = [], None
    for dtype, tolerance in LOSS_TOLERANCE.items():
        model = FlaxBertForPreTraining(bert_config, dtype=compute_dtype(dtype), _do_init=False)
        precision = jax.default_matmul_precision("highest") if dtype == "float32" else contextlib.nullcontext()
        with precision:
            fast_loss, compiled = _eval_loss(fast, model, params, batch)
            hf_loss, _ = _eval_loss(hf, model, params, batch)
        fast_bf16 = compiled if dtype == "bfloat16" else fast_bf16
        difference = abs(fast_loss - hf_loss)
        checks.append({
            "name": f"loss fast vs hf, {dtype}",
            "status": "pass" if difference <= tolerance * abs(hf_loss) else "FAIL",
            "detail": f"{fast_loss:.6f} vs {hf_loss:.6f}: |Δ| {difference:.2e}, allowed {tolerance:g} × loss "
            f"({fast.model.preset}, {fast.data.max_seq_len} × {batch_size}, no dropout)",
        })
    checks.append(_cudnn_check(fast_bf16))
    return checks


def _cudnn_check(compiled_bf16: Any) -> Check:
    """On a GPU, fast's bfloat16 forward without dropout must hold cuDNN's fused attention."""
    name = "cuDNN fused attention in fast's compiled bfloat16 forward"
    backend = jax.default_backend()
    if backend != "gpu":
        return {"name": name, "status": "not applicable", "detail": f"backend {backend}: cuDNN is a GPU library"}
    found = attention_kernel(compiled_bf16) == "cudnn"
    detail = f"{CUDNN_ATTENTION}* custom calls {'found' if found else 'absent'} in its HLO"
    return {"name": name, "status": "pass" if found else "FAIL", "detail": detail}
