"""Flax BERT parameters → PyTorch state-dict names and layouts, written with no torch installed.

transformers' own Flax→PyTorch loader (4.57, `from_flax=True`) leaves the MLM decoder on the meta
device; we write the state dict that PyTorch `save_pretrained` would have written instead:
Dense kernels transposed to [out, in], LayerNorm scale → weight, embeddings → weight, the tied
decoder weight omitted (transformers ties it to the word embeddings on load) and the decoder bias
stored once as `cls.predictions.bias`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax.traverse_util import flatten_dict

EXPORT_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def torch_name(path: tuple[str, ...]) -> tuple[str, bool]:
    """(PyTorch parameter name, whether the array is transposed) of a Flax parameter path."""
    *module, leaf = path
    if leaf == "kernel":
        return ".".join([*module, "weight"]), True
    if leaf == "embedding" or (leaf == "scale" and module and module[-1] == "LayerNorm"):
        return ".".join([*module, "weight"]), False
    return ".".join(path), False


def to_torch_state(params: Any, dtype: str = "float32") -> dict[str, jnp.ndarray]:
    """The PyTorch state dict of FlaxBertForPreTraining-style params (any BERT head tree), cast to `dtype`."""
    state = {}
    for path, value in flatten_dict(params).items():
        name, transpose = torch_name(path)
        array = jnp.asarray(value)
        state[name] = (array.T if transpose else array).astype(EXPORT_DTYPES[dtype])
    return state
