"""scripts/accelerator.py: the accelerator and the pip extras, on fake machines (a PCI tree and nvidia-smi)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "accelerator.py"
GVNIC, TPU_V5E, NVIDIA = ("0x1ae0", "0x0042"), ("0x1ae0", "0x0063"), ("0x10de", "0x2330")


def _module():
    spec = importlib.util.spec_from_file_location("accelerator", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


accelerator = _module()


def pci_tree(root: Path, *devices: tuple[str, str]) -> Path:
    for index, (vendor, device) in enumerate(devices):
        slot = root / f"0000:00:{index:02x}.0"
        slot.mkdir(parents=True)
        (slot / "vendor").write_text(vendor + "\n")
        (slot / "device").write_text(device + "\n")
    return root


def nvidia_smi(driver: str | None):
    """A `run` whose nvidia-smi reports `driver` (None: no working nvidia-smi)."""

    def run(argv: list[str]) -> str | None:
        assert argv[0] == "nvidia-smi" and "--query-gpu=driver_version" in argv
        return None if driver is None else f"{driver}\n"

    return run


def test_cpu(tmp_path: Path) -> None:
    found = accelerator.detect(pci_tree(tmp_path, NVIDIA), nvidia_smi(None))  # a GPU without a driver: no JAX GPU
    assert (found["runtime"], found["extras"], found["uninstall"]) == ("cpu", "torch", [])


def test_google_virtual_nic_is_not_a_tpu(tmp_path: Path) -> None:
    """gVNIC shares Google's PCI vendor id with the TPU chips: the device id decides."""
    assert accelerator.detect(pci_tree(tmp_path, GVNIC), nvidia_smi(None))["runtime"] == "cpu"


def test_tpu_by_its_device_id(tmp_path: Path) -> None:
    found = accelerator.detect(pci_tree(tmp_path, GVNIC, TPU_V5E), nvidia_smi(None))
    assert (found["runtime"], found["detail"], found["extras"]) == ("tpu", "1 TPU chip(s)", "torch,tpu")


@pytest.mark.parametrize(
    "driver, cuda, clashing",
    [
        ("550.54.15", 12, ["jax-cuda13-plugin", "jax-cuda13-pjrt"]),  # Colab's GPU image (CUDA 12.8)
        ("525.60.13", 12, ["jax-cuda13-plugin", "jax-cuda13-pjrt"]),
        ("580.65.06", 13, ["jax-cuda12-plugin", "jax-cuda12-pjrt"]),  # Colab's preinstalled CUDA 12 plugin goes
    ],
)
def test_gpu_extras_by_driver(tmp_path: Path, driver: str, cuda: int, clashing: list[str]) -> None:
    found = accelerator.detect(pci_tree(tmp_path, NVIDIA), nvidia_smi(driver))
    assert (found["runtime"], found["extras"], found["uninstall"]) == ("gpu", f"torch,cuda{cuda}", clashing)
    assert driver in found["detail"]


def test_a_driver_too_old_for_any_jax_wheel(tmp_path: Path) -> None:
    with pytest.raises(accelerator.UnsupportedMachine, match="driver 470.82.01 is older than .* need \\(525\\)"):
        accelerator.detect(pci_tree(tmp_path, NVIDIA), nvidia_smi("470.82.01"))


def _run_script(tmp_path: Path, *args: str, smi: str | None = None) -> subprocess.CompletedProcess:
    """The script as users run it, with a fake nvidia-smi (a shell script printing `smi`) first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if smi is not None:
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n{smi}\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True)


def test_the_command_line(tmp_path: Path) -> None:
    new_driver = _run_script(tmp_path, "--json", smi="echo 580.65.06")
    assert new_driver.returncode == 0 and json.loads(new_driver.stdout)["extras"] == "torch,cuda13"
    assert _run_script(tmp_path, "--extras", smi="echo 550.54.15").stdout == "torch,cuda12\n"
    broken = _run_script(tmp_path, "--extras", smi="echo 'NVIDIA-SMI has failed'; exit 9")
    assert broken.returncode == 0 and broken.stdout in ("torch\n", "torch,tpu\n")
    old = _run_script(tmp_path, smi="echo 470.82.01")
    assert old.returncode == 2 and old.stdout == ""
    assert old.stderr.startswith("error: NVIDIA driver 470.82.01") and old.stderr.count("\n") == 1
