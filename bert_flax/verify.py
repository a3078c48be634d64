"""`export --verify`: load the export with PyTorch transformers and compare logits with the Flax model (needs torch)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from transformers import BertTokenizerFast, FlaxBertForPreTraining

from bert_flax.errors import UserError
from bert_flax.sources import LoadedModel

# Allowed max |logit difference|. float32: 1e-4 absolute (only the order of float operations
# differs). bf16/fp16 round every weight to 8/11 significant bits (relative error up to 2^-9/2^-12)
# and the errors add up through the layers, so the bound is relative to the largest |logit|:
# 2% (bf16) and 0.5% (fp16). Measured on MiniLM-L6 (|logits| up to ~10): bf16 0.057, fp16 0.0079,
# float32 9.8e-6; on the smoke model: bf16 0.0096, fp16 0.0014.
ABSOLUTE_TOLERANCE = 1e-4
RELATIVE_TOLERANCE = {"float32": 0.0, "bfloat16": 0.02, "float16": 0.005}
PAIRS = (
    ("The soul becomes dyed with the [MASK] of its thoughts.", "Very little is needed to make a happy life."),
    ("Waste no more time arguing what a good man should be.", "Be [MASK]."),
    ("You have power over your mind, not outside events.", "Realize this, and you will find [MASK]."),
)


class VerificationFailed(UserError):
    """The export does not reproduce the Flax model."""


def _load_torch(directory: Path):
    import torch
    from transformers import BertForPreTraining

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addHandler(handler)
    try:
        model, info = BertForPreTraining.from_pretrained(directory, output_loading_info=True, dtype=torch.float32)
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
    """Max |Δ| of MLM and NSP logits between the Flax source and the exported PyTorch model."""
    try:
        import torch
    except ImportError:
        raise UserError("--verify needs PyTorch: pip install torch (or export without --verify)") from None
    torch_model = _load_torch(directory)
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
    flax_out = FlaxBertForPreTraining(loaded.config, _do_init=False)(**batch, params=loaded.params)
    with torch.no_grad():
        torch_out = torch_model(**{key: torch.from_numpy(value).long() for key, value in batch.items()})
    real_BxL = batch["attention_mask"].astype(bool)
    mlm = np.abs(np.asarray(flax_out.prediction_logits) - torch_out.prediction_logits.numpy())[real_BxL]
    nsp = np.abs(np.asarray(flax_out.seq_relationship_logits) - torch_out.seq_relationship_logits.numpy())
    scale = float(np.abs(np.asarray(flax_out.prediction_logits)[real_BxL]).max())
    tolerance = max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE[dtype] * scale)
    result = {"mlm_max_abs_diff": float(mlm.max()), "nsp_max_abs_diff": float(nsp.max()), "tolerance": tolerance}
    if max(result["mlm_max_abs_diff"], result["nsp_max_abs_diff"]) > tolerance:
        raise VerificationFailed(
            f"the export's logits differ from the Flax model's by up to MLM {result['mlm_max_abs_diff']:.2e}, "
            f"NSP {result['nsp_max_abs_diff']:.2e} (tolerance {tolerance:.2g} for {dtype}); nothing was written"
        )
    return result
