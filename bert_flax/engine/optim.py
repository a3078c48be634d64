"""Optax: warmup + linear/cosine decay, AdamW or LAMB without decay on biases and LayerNorm, clipping."""

from __future__ import annotations

from typing import Any

import optax
from flax.traverse_util import flatten_dict, unflatten_dict

from bert_flax.config import OptimConfig

# BERT's Adam epsilon (Google's optimization.py and HF's run_mlm_flax).
ADAM_EPS = 1e-6


def learning_rate_schedule(optim: OptimConfig, total_steps: int) -> optax.Schedule:
    """0 → learning_rate over warmup_steps, then linear or cosine decay to 0 at total_steps."""
    warmup = min(optim.warmup_steps, total_steps)
    decay_steps = max(total_steps - warmup, 1)
    if optim.schedule == "cosine":
        decay = optax.cosine_decay_schedule(optim.learning_rate, decay_steps)
    else:
        decay = optax.linear_schedule(optim.learning_rate, 0.0, decay_steps)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, optim.learning_rate, warmup), decay], [warmup])


def decay_mask(params: Any) -> Any:
    """True where weight decay applies: every parameter except biases and LayerNorm scales/biases."""
    flat = flatten_dict(params)
    return unflatten_dict({path: path[-1] != "bias" and "LayerNorm" not in path for path in flat})


def make_optimizer(optim: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """The configured optimizer with global-norm clipping in front (clip_norm=0: no clipping)."""
    schedule = learning_rate_schedule(optim, total_steps)
    if optim.name == "lamb":
        update = optax.lamb(schedule, eps=ADAM_EPS, weight_decay=optim.weight_decay, mask=decay_mask)
    else:
        update = optax.adamw(schedule, eps=ADAM_EPS, weight_decay=optim.weight_decay, mask=decay_mask)
    if optim.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(optim.clip_norm), update)
    return update
