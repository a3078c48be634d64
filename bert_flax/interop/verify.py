"""`export --verify`: load the export with PyTorch transformers and compare logits with the Flax model (needs torch).

The classes and the logits compared come from the source's architecture (architectures.py): MLM + NSP
logits for pre-training, class logits for classification, start + end logits for QA.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from transformers import BertTokenizerFast

from bert_flax.errors import UserError
from bert_flax.interop.sources import LoadedModel
from bert_flax.model.architectures import Architecture, architecture_of

# Allowed max |logit difference|. float32: 1e-4 absolute (only the order of float operations
# differs). bf16/fp16 round every weight to 8/11 significant bits (relative error up to 2^-9/2^-12)
# and the errors add up through the layers, so the bound is relative to the largest |logit| (of the
# per-token outputs when the head has them: MLM, QA start/end): 2% (bf16) and 0.5% (fp16).
# Measured on MiniLM-L6 (|logits| up to ~10): bf16 0.057, fp16 0.0079, float32 9.8e-6; on the smoke
# model: bf16 0.0096, fp16 0.0014; on tiny 2-step fine-tunes: classification (|logits| ~0.5) bf16
# 0.0015, fp16 3.1e-4, float32 2.4e-7; QA (|logits| ~2.5) bf16 0.0068, fp16 0.0028, float32 5.7e-7.
ABSOLUTE_TOLERANCE = 1e-4
RELATIVE_TOLERANCE = {"float32": 0.0, "bfloat16": 0.02, "float16": 0.005}
PAIRS = (
    ("The soul becomes dyed with the [MASK] of its thoughts.", "Very little is needed to make a happy life."),
    ("Waste no more time arguing what a good man should be.", "Be [MASK]."),
    ("You have power over your mind, not outside events.", "Realize this, and you will find [MASK]."),
)


class VerificationFailed(UserError):
    """The export does not reproduce the Flax model."""


def _load_torch(directory: Path, architecture: Architecture):
    import torch

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addHandler(handler)
    try:
        model, info = architecture.torch_class.from_pretrained(directory, output_loading_info=True, dtype=torch.float32)
    finally:
        logger.removeHandler(handler)
    problems = {key: value for key, value in info.items() if value}
    problems.update(
        {"warning": [r.getMessage().splitlines()[0]] for r in records if "weights" in r.getMessage().lower()}
    )
    if any(p.is_meta for p in model.parameters()):
        problems["meta_device"] = ["some parameters were left on the meta device"]
    if problems:
        raise VerificationFailed(f"transformers could not load {directory} cleanly: {problems}")
    return model.eval()


def verify_export(directory: Path, loaded: LoadedModel, dtype: str) -> dict[str, float]:
    """Max |Δ| of every compared output ("mlm_max_abs_diff", ...) between the Flax source and the PyTorch export."""
    try:
        import torch
    except ImportError:
        raise UserError("--verify needs PyTorch: pip install torch (or export without --verify)") from None
    architecture = architecture_of(loaded.config)
    torch_model = _load_torch(directory, architecture)
    tokenizer = BertTokenizerFast.from_pretrained(directory)
    max_length = min(64, loaded.config.max_position_embeddings)
    batch = tokenizer(
        [a for a, _ in PAIRS],
        [b for _, b in PAIRS],
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    flax_out = architecture.flax_class(loaded.config, _do_init=False)(**batch, params=loaded.params)
    with torch.no_grad():
        torch_out = torch_model(**{key: torch.from_numpy(value).long() for key, value in batch.items()})
    real_BxL = batch["attention_mask"].astype(bool)
    result, scales = {}, []
    scaled = [o for o in architecture.outputs if o.per_token] or list(architecture.outputs)
    for output in architecture.outputs:
        expected = np.asarray(getattr(flax_out, output.attribute))
        got = getattr(torch_out, output.attribute).numpy()
        compared = real_BxL if output.per_token else slice(None)  # padded positions mean nothing
        result[f"{output.name}_max_abs_diff"] = float(np.abs(expected - got)[compared].max())
        if output in scaled:
            scales.append(float(np.abs(expected[compared]).max()))
    tolerance = max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE[dtype] * max(scales))
    if max(result.values()) > tolerance:
        shown = ", ".join(f"{o.name.upper()} {result[f'{o.name}_max_abs_diff']:.2e}" for o in architecture.outputs)
        raise VerificationFailed(
            f"the export's logits differ from the Flax model's by up to {shown} "
            f"(tolerance {tolerance:.2g} for {dtype}); nothing was written"
        )
    return {**result, "tolerance": tolerance}
