"""Models in and out: where a model comes from (sources.py, init_model.py), PyTorch names and layouts
(torch_state.py), `bert-flax export` and its PyTorch check (export.py, verify.py), and inference with
the pre-training heads (predict.py)."""
