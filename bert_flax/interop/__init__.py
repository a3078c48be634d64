"""Models in and out: where a model comes from (sources.py), PyTorch names and layouts
(torch_state.py), `bert-flax export` and its PyTorch check (export.py, verify.py), and inference
(predict.py: fill-mask, next-sentence; predict_heads.py: classify, qa)."""

from bert_flax._compat import forward_attributes

# `from bert_flax.interop import to_torch_state` worked when this package was one module.
__getattr__ = forward_attributes(
    __name__, "bert_flax.interop.torch_state", frozenset({"EXPORT_DTYPES", "torch_name", "to_torch_state"})
)
