#!/usr/bin/env python
"""Which accelerator this machine has, and which pip extras of bert_flax install the JAX that runs on it.

    python scripts/accelerator.py            # e.g. "gpu (NVIDIA driver 550.54.15): torch,cuda12"
    python scripts/accelerator.py --extras   # e.g. "torch,cuda12": pip install -e ".[$(...)]"
    python scripts/accelerator.py --json     # everything, for the Colab notebook

Standard library only: it runs before anything is installed. The rules, from JAX's installation guide:
- an NVIDIA GPU (a working `nvidia-smi`, asked first): CUDA 13 wheels need driver >= 580, CUDA 12 wheels
  >= 525; an older driver can run neither (exit 2). The other CUDA major's JAX plugins are listed to be
  uninstalled, because two plugins clash (Colab's GPU image ships jax-cuda12-plugin);
- a TPU: a Google PCI device (vendor 0x1ae0) whose device id is a TPU chip's, as JAX's own hardware
  detection checks (jax/_src/hardware_utils.py). The vendor alone is not enough: Google's virtual NIC
  (gVNIC) on any Compute Engine VM shares it;
- otherwise the CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

PCI_DEVICES = Path("/sys/bus/pci/devices")
GOOGLE_PCI_VENDOR = "0x1ae0"
# PCI device ids of TPU chips (JAX 0.10's list): v2/v3, an unnamed one, v4, v5p, v5e, v6e, TPU7x.
TPU_PCI_DEVICES = {"0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076"}
CUDA13_MIN_DRIVER = 580
CUDA12_MIN_DRIVER = 525
CUDA_PLUGINS = {12: ["jax-cuda12-plugin", "jax-cuda12-pjrt"], 13: ["jax-cuda13-plugin", "jax-cuda13-pjrt"]}


class UnsupportedMachine(Exception):
    """An accelerator no JAX wheel can drive (an NVIDIA driver older than CUDA 12 needs)."""


def nvidia_driver(run: Callable[[list[str]], str | None]) -> str | None:
    """The NVIDIA driver version `nvidia-smi` reports for the first GPU, or None without a working one."""
    out = run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    lines = [line.strip() for line in (out or "").splitlines() if line.strip()]
    return lines[0] if lines and re.match(r"^\d+(\.\d+)*$", lines[0]) else None


def tpu_chips(pci_root: Path) -> int:
    """TPU chips on the PCI bus: Google's vendor id with a TPU device id."""
    chips = 0
    for vendor in pci_root.glob("*/vendor"):
        device = vendor.with_name("device")
        if vendor.read_text().strip() == GOOGLE_PCI_VENDOR and device.is_file():
            chips += device.read_text().strip() in TPU_PCI_DEVICES
    return chips


def detect(pci_root: Path, run: Callable[[list[str]], str | None]) -> dict:
    """{"runtime": tpu|gpu|cpu, "detail", "extras", "uninstall"}; raises UnsupportedMachine."""
    driver = nvidia_driver(run)
    if driver is not None:
        major = int(driver.split(".")[0])
        if major < CUDA12_MIN_DRIVER:
            raise UnsupportedMachine(
                f"NVIDIA driver {driver} is older than JAX's CUDA 12 wheels need ({CUDA12_MIN_DRIVER}); "
                "update the driver, or run on the CPU"
            )
        cuda = 13 if major >= CUDA13_MIN_DRIVER else 12
        other = 12 if cuda == 13 else 13
        return {
            "runtime": "gpu",
            "detail": f"NVIDIA driver {driver}: CUDA {cuda} wheels",
            "extras": f"torch,cuda{cuda}",
            "uninstall": CUDA_PLUGINS[other],
        }
    chips = tpu_chips(pci_root)
    if chips:
        return {"runtime": "tpu", "detail": f"{chips} TPU chip(s)", "extras": "torch,tpu", "uninstall": []}
    return {"runtime": "cpu", "detail": "no GPU or TPU found", "extras": "torch", "uninstall": []}


def run_command(argv: list[str]) -> str | None:
    """A command's stdout, or None when it is missing or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--extras", action="store_true", help="print only the pip extras")
    shown.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    try:
        found = detect(PCI_DEVICES, run_command)
    except UnsupportedMachine as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(found))
    elif args.extras:
        print(found["extras"])
    else:
        print(f"{found['runtime']} ({found['detail']}): {found['extras']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
