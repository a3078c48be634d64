"""bert_flax: pre-train BERT (MLM + NSP) in JAX/Flax and hand the weights back to PyTorch.

Layers, bottom up: config.py (typed configs, no JAX), errors.py, disk.py (checked, atomic writes),
hub.py (the hub, offline-safe) · data/ (corpus → batches, NumPy) · model/ (FlaxBertForPreTraining,
losses) · engine/ (steps, sharding, optimizer, checkpoints, step loop) · run/ (the run directory and
its logs, no JAX) · interop/ (model sources, export, inference) · finetune/ (task heads) · pretrain.py,
evaluate.py, bench.py (orchestration) · cli/ (the `bert-flax` command). tests/test_layout.py keeps
these rules.
"""

from bert_flax import _compat

__version__ = "0.1.0"
_compat.install()
