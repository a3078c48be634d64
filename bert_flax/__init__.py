"""bert_flax: pre-train BERT (MLM + NSP) in JAX/Flax and hand the weights back to PyTorch.

Layers, bottom up: config.py (typed configs, no JAX) · data/ (corpus → batches, NumPy) · model/
(FlaxBertForPreTraining, losses) · engine/ (steps, sharding, optimizer, checkpoints, step loop) ·
run/ (the run directory and its logs) · interop/ (model sources, export, inference) · finetune/
(task heads) · pretrain.py, evaluate.py, bench.py (orchestration) · cli/ (the `bert-flax` command).
"""

from bert_flax import _compat

__version__ = "0.1.0"
_compat.install()
