"""Known peak dense matmul TFLOP/s of one device, by the `device_kind` JAX reports: the denominator of MFU
when the device is in the table (`bert-flax bench --measure-peak` measures one instead). No JAX here.

Per JAX device: a GPU, or a TPU chip (v4 and later: one device per chip), or a TPU v2/v3 core (JAX shows
each of a chip's two cores as a device). float32 counts what JAX's default precision runs float32 matmuls
on: TF32 tensor cores on NVIDIA Ampere and later, bfloat16 passes on a TPU.
"""

from __future__ import annotations

import re

# (pattern that the whole device_kind matches, {dtype: TFLOP/s}); an unlisted variant gets no known peak.
KNOWN_PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    # NVIDIA H200 Tensor Core GPU datasheet, SXM: BF16 1,979 and TF32 989 TFLOP/s with sparsity; dense is half.
    ("NVIDIA H200", {"bfloat16": 989.5, "float32": 494.5}),
    # Same datasheet, H200 NVL: BF16 1,671 and TF32 835 with sparsity; dense half.
    ("NVIDIA H200 NVL", {"bfloat16": 835.5, "float32": 417.5}),
    # NVIDIA H100 Tensor Core GPU datasheet, SXM (JAX names it by its memory): BF16 1,979, TF32 989 sparse.
    ("NVIDIA H100 80GB HBM3", {"bfloat16": 989.5, "float32": 494.5}),
    # Same datasheet, PCIe: BF16 1,513 and TF32 756 with sparsity; dense half.
    ("NVIDIA H100 PCIe", {"bfloat16": 756.5, "float32": 378.0}),
    # NVIDIA A100 Tensor Core GPU datasheet, every A100 (SXM4 and PCIe, 40 and 80 GB): BF16 312, TF32 156 dense.
    (r"NVIDIA A100\b.*", {"bfloat16": 312.0, "float32": 156.0}),
    # NVIDIA L4 Tensor Core GPU datasheet: BF16 242 and TF32 120 with sparsity; dense half.
    ("NVIDIA L4", {"bfloat16": 121.0, "float32": 60.0}),
    # Cloud TPU documentation, system architecture pages: bf16 peak per chip — v2 45 and v3 123 (two cores
    # each, so half per JAX device), v4 275, v5e ("TPU v5 lite") 197, v5p ("TPU v5") 459, v6e 918.
    ("TPU v2", {"bfloat16": 22.5, "float32": 22.5}),
    ("TPU v3", {"bfloat16": 61.5, "float32": 61.5}),
    ("TPU v4", {"bfloat16": 275.0, "float32": 275.0}),
    ("TPU v5 lite", {"bfloat16": 197.0, "float32": 197.0}),
    ("TPU v5", {"bfloat16": 459.0, "float32": 459.0}),
    ("TPU v6 lite", {"bfloat16": 918.0, "float32": 918.0}),
)


def known_peak_tflops(device_kind: str, dtype: str) -> float | None:
    """The table's peak for this device kind and compute dtype, or None when the kind is not in it."""
    for pattern, peaks in KNOWN_PEAK_TFLOPS:
        if re.fullmatch(pattern, device_kind.strip()):
            return peaks.get(dtype)
    return None
