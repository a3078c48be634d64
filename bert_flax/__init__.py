"""bert_flax: pre-train BERT (MLM + NSP) in JAX/Flax and hand the weights back to PyTorch.

Layers, bottom up (tests/test_layout.py keeps them; an import only points down):
config.py, errors.py, disk.py, hub.py (pure utilities) · data/ (corpus → batches, NumPy) · run/ (the
run directory and its logs, no JAX) · engine/ (steps, sharding, optimizer, checkpoints, step loop) ·
model/ (FlaxBertForPreTraining and the fast impl, losses) · interop/ (model sources, export, inference) ·
finetune/ (task heads) · pretrain.py, evaluate.py, bench/ (orchestration) · cli/ (the `bert-flax` command).
"""

__version__ = "0.1.0"
