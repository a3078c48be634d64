"""What a benchmark ran on: the devices JAX sees, the runtime under them (NVIDIA driver, CUDA, cuDNN; the
TPU runtime) and the versions of the packages that time steps. Any of it may be missing: None then."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from typing import Any

import jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "transformers", "torch", "numpy")


def installed_version(*names: str) -> str | None:
    """The installed version of the first of `names` that is installed (package metadata: nothing imported)."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def package_versions() -> dict[str, str | None]:
    """Python's and PACKAGES' versions (torch is not imported)."""
    return {"python": platform.python_version(), **{name: installed_version(name) for name in PACKAGES}}


def _nvidia_driver() -> str | None:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    return lines[0] if done.returncode == 0 and lines else None


def _cuda_versions() -> dict[str, int | None]:
    """CUDA runtime, driver API and cuDNN versions as JAX's CUDA plugin reports them (an internal module of
    jaxlib, hence the broad guard), e.g. 13000 and 91300."""
    try:
        from jax._src.lib import cuda_versions

        return {
            "cuda_runtime": cuda_versions.cuda_runtime_get_version(),
            "cuda_driver_api": cuda_versions.cuda_driver_get_version(),
            "cudnn": cuda_versions.cudnn_get_version(),
        }
    except Exception:  # noqa: BLE001 — absent on CPU/TPU builds, renamed in other versions
        return {"cuda_runtime": None, "cuda_driver_api": None, "cudnn": None}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, Any]:
    """Devices, runtime and package versions, for a benchmark's header."""
    device = jax.devices()[0]
    backend = device.platform
    out: dict[str, Any] = {
        "backend": backend,
        "device_kind": device.device_kind,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "cpu": f"{_cpu_model()}, {len(os.sched_getaffinity(0))} cores",
        "platform_version": str(getattr(device.client, "platform_version", "")).strip() or None,
    }
    if backend == "gpu":
        out.update({"nvidia_driver": _nvidia_driver(), **_cuda_versions()})
    if backend == "tpu":
        out["libtpu"] = installed_version("libtpu", "libtpu-nightly")
    return {**out, "versions": package_versions()}

