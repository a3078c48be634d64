"""The timing harness: each step function being timed is a `Mode`; modes run interleaved step by
step, so load from other processes hits all of them alike.

A step is timed from taking its batch to `jax.block_until_ready` of its outputs, after `warmup`
untimed steps; compilation is timed separately (ahead of time, `lower().compile()`).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np

from bert_flax.engine.prefetch import maybe_prefetch

Batches = Callable[[], Iterator[dict]]  # a factory of fresh, identical host-batch iterators


@dataclasses.dataclass
class Mode:
    """One step function being timed: its state, its (prefetched) host batches and how it places them
    on the devices (in the timed loop, as the trainer does), how to read the loss from its outputs,
    and its step times."""

    step: Callable[[Any, Any], tuple[Any, Any]]
    state: Any
    batches: Iterator
    place: Callable[[dict], Any]
    loss: Callable[[Any], float]  # the last step's loss from its outputs
    compiled: Any  # jax.stages.Compiled
    compile_seconds: float
    outputs: Any = None
    times: list[float] = dataclasses.field(default_factory=list)


def prepare_mode(
    compile_step: Callable[[Any], Any],
    step: Callable[[Any, Any], tuple[Any, Any]],
    state: Any,
    place: Callable[[dict], Any],
    loss: Callable[[Any], float],
    new_batches: Batches,
    prefetch: int,
) -> Mode:
    """Compile ahead of time (timed) and start the mode's batch stream."""
    start = time.perf_counter()
    compiled = compile_step(place(next(iter(new_batches()))))
    compile_s = time.perf_counter() - start
    return Mode(step, state, maybe_prefetch(new_batches(), prefetch), place, loss, compiled, compile_s)


def time_interleaved(modes: list[Mode], steps: int, warmup: int) -> None:
    """Step i of every mode, then step i + 1 of every mode, ...: background load hits all modes alike."""
    try:
        for index in range(warmup + steps):
            for mode in modes:
                start = time.perf_counter()
                mode.state, mode.outputs = mode.step(mode.state, mode.place(next(mode.batches)))
                jax.block_until_ready((mode.state, mode.outputs))
                if index >= warmup:
                    mode.times.append(time.perf_counter() - start)
    finally:
        for mode in modes:
            getattr(mode.batches, "close", lambda: None)()


@dataclasses.dataclass(frozen=True)
class StepWork:
    """What one step computes, to turn step times into rates: tokens, sequences, model FLOPs, and the
    peak TFLOP/s of all devices (None: no MFU)."""

    tokens: int
    sequences: int
    model_flops: float
    peak_tflops: float | None


def step_rates(times: list[float], work: StepWork) -> dict[str, float | None]:
    """Step-time percentiles and the rates of the median step."""
    median = statistics.median(times)
    p10, p90 = (float(np.percentile(times, q)) for q in (10, 90))
    tflops = work.model_flops / median / 1e12
    return {
        "step_seconds_median": median,
        "step_seconds_p10": p10,
        "step_seconds_p90": p90,
        "step_seconds_min": min(times),
        "step_seconds_max": max(times),
        "tokens_per_second": work.tokens / median,
        "sequences_per_second": work.sequences / median,
        "model_tflops_per_second": tflops,
        "mfu": None if work.peak_tflops is None else tflops / work.peak_tflops,
    }
