"""bert_flax: pre-train BERT (MLM + NSP) in JAX/Flax and hand the weights back to PyTorch."""

__version__ = "0.1.0"
