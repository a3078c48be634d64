"""The baselines `bert-flax bench --baseline NAME` times next to ours: one entry each, name → how to
build its timed step. Entries import their code when used, so listing them (the CLI's help) needs no JAX."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from bert_flax.bench.timing import Mode


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A step timed next to ours on the same batches and initial parameters."""

    help: str
    mode: Callable[..., "Mode"]  # (config, pretrained model, batch factory, prefetch) → the timed Mode


def _hf_example(*args: Any) -> "Mode":
    from bert_flax.bench.hf_example import hf_example_mode

    return hf_example_mode(*args)


BASELINES: dict[str, Baseline] = {
    "hf-example": Baseline(
        "transformers' Flax example step (run_mlm_flax.py: full-vocabulary logits, one-hot loss, adamw)",
        _hf_example,
    ),
}
