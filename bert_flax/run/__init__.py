"""A run directory and what is written in it, with no JAX: its map and the config that owns it
(layout.py), metrics.jsonl (metrics.py), the logs that mirror it (logs.py, tensorboard.py,
wandb_log.py), the progress line (progress.py) and `bert-flax report` (report.py)."""
