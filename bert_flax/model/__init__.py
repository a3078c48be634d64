"""The model: transformers' FlaxBertForPreTraining built from a preset or a checkpoint (pretraining.py),
its MLM/NSP losses as a Task (losses.py), the head classes a checkpoint can hold (architectures.py)
and the FLOP count of a step (flops.py)."""

from bert_flax._compat import forward_attributes

# `from bert_flax.model import build_model` worked when this package was one module.
__getattr__ = forward_attributes(
    __name__,
    "bert_flax.model.pretraining",
    frozenset({"PretrainingModel", "build_model", "compute_dtype", "preset_config", "init_params",
               "initialized_groups", "pretraining_logits", "HEAD_GROUPS", "OFFLINE_FIX", "Params"}),
)
