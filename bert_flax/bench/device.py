"""What the device can do and what a compiled step costs it: peak matmul TFLOP/s (measured, or known for
the device kind: peaks.py), XLA's memory and FLOP analyses of a compiled step, and the device's peak memory."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp

from bert_flax.bench.peaks import known_peak_tflops


def measure_peak_tflops(dtype: jnp.dtype, size: int | None = None, repeats: int = 10) -> float:
    """TFLOP/s of a square matmul on the first device (2048² on CPU, 8192² elsewhere)."""
    device = jax.devices()[0]
    n = size or (2048 if device.platform == "cpu" else 8192)
    a = jax.device_put(jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype), device)
    matmul = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(matmul(a, a))
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a, a)
    jax.block_until_ready(out)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def resolve_peak_tflops(given: float | None, measure: bool, dtype: jnp.dtype) -> tuple[float | None, str | None]:
    """(peak TFLOP/s of one device, "given" / "measured" / "known"), or (None, None): no MFU then.
    Without a given or measured peak, the known one of the device kind (peaks.py) when it is listed."""
    if measure:
        return measure_peak_tflops(dtype), "measured"
    if given is not None:
        return given, "given"
    known = known_peak_tflops(jax.devices()[0].device_kind, jnp.dtype(dtype).name)
    return known, None if known is None else "known"


def memory(compiled: Any) -> dict[str, int | None]:
    """The compiled step's buffer sizes (XLA's memory_analysis) and the device's peak (None on CPU)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    out: dict[str, int | None] = {"device_peak_bytes": stats.get("peak_bytes_in_use")}
    analysis = compiled.memory_analysis()
    for name in ("argument", "output", "alias", "temp"):
        out[f"compiled_{name}_bytes"] = None if analysis is None else int(getattr(analysis, f"{name}_size_in_bytes"))
    return out


def xla_flops(compiled: Any) -> float | None:
    """XLA's FLOP count of the compiled step (None when the backend gives none)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return None if not cost or "flops" not in cost else float(cost["flops"])
