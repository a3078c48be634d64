"""notebooks/colab_quickstart.ipynb: committed clean and in sync with its generator, and it runs top to bottom.

The run executes every cell with nbclient in a python3 kernel on the CPU, with the smoke config and
tiny overrides injected after the `parameters` cell (as papermill would), from the repository root.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO_ROOT

nbformat = pytest.importorskip("nbformat")

NOTEBOOK = REPO_ROOT / "notebooks" / "colab_quickstart.ipynb"
GENERATOR = REPO_ROOT / "scripts" / "make_colab_notebook.py"
CELL_TIMEOUT_S = 300


def _generator():
    spec = importlib.util.spec_from_file_location("make_colab_notebook", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(nb, cell_id: str):
    return next(cell for cell in nb.cells if cell.get("id") == cell_id)


def _text(cell) -> str:
    """The stream and text/plain outputs of a code cell, joined."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def inject_parameters(nb, values: dict) -> None:
    """Insert a cell setting `values` after the cell tagged `parameters`, papermill's way."""
    index = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    injected = nbformat.v4.new_code_cell(source, id="injected-parameters", metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, injected)


def test_committed_notebook_is_clean_and_valid():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code), "clear all outputs"
    tagged = [cell.id for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert tagged == ["parameters"]
    assert "bert-flax report" in _cell(nb, "report").source


def test_notebook_matches_its_generator():
    assert NOTEBOOK.read_text(encoding="utf-8") == _generator().render(), (
        "notebooks/colab_quickstart.ipynb differs from scripts/make_colab_notebook.py: edit the script, "
        "then run python scripts/make_colab_notebook.py"
    )


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(smoke_cache, tmp_path, monkeypatch):
    NotebookClient = pytest.importorskip("nbclient").NotebookClient
    pytest.importorskip("torch")  # export --verify and the PyTorch cells

    run_dir, export_dir = tmp_path / "run", tmp_path / "exported"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    inject_parameters(
        nb,
        {
            "INSTALL": False,
            "CORPUS": "",  # the shipped data/meditations.txt
            "CONFIG": "configs/smoke.yaml",
            "OVERRIDES": [f"data.cache_dir={smoke_cache}", "train.steps=20", "eval.every=10", "checkpoint.every=10"],
            "RUN_DIR": str(run_dir),
            "EXPORT_DIR": str(export_dir),
        },
    )
    # No JAX backend may start in the kernel's process: a TPU can be held by one process only (the notebook
    # says why). transformers imports jax when flax is installed; that alone claims no device.
    probe = (
        "xla_bridge = sys.modules.get('jax._src.xla_bridge')\n"
        "print('jax backend in kernel:', bool(xla_bridge and xla_bridge.backends_are_initialized()))"
    )
    nb.cells.append(nbformat.v4.new_code_cell(probe, id="probe-jax"))
    # The kernel runs this Python (jupyter_client maps the spec's "python" to sys.executable), and the
    # notebook's `!bert-flax` must be this environment's.
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # One device, as on a Colab GPU or v5e-1 runtime (and the notebook's runs need no more).
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    # A CellExecutionError (with the cell's traceback) fails the test.
    NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}
    ).execute()

    assert (run_dir / "final" / "config.json").is_file()
    assert (run_dir / "checkpoints").is_dir()
    assert "final (step 20): MLM accuracy" in _text(_cell(nb, "eval"))
    assert "jax.devices(): [CpuDevice(id=0)" in _text(_cell(nb, "devices"))

    report = _cell(nb, "report")
    shown = [output for output in report.outputs if "image/png" in output.get("data", {})]
    plots = sorted((run_dir / "plots").glob("*.png"))
    assert run_dir / "plots" / "loss.png" in plots and len(shown) == len(plots), f"{len(shown)} shown of {plots}"

    assert "[MASK] 1: " in _text(_cell(nb, "fill-mask"))
    nsp = _text(_cell(nb, "next-sentence"))
    assert nsp.count("IsNext") + nsp.count("NotNext") == 2
    assert "verified with PyTorch transformers" in _text(_cell(nb, "export"))
    torch_text = _text(_cell(nb, "torch-fill-mask"))
    assert "PyTorch [MASK]: " in torch_text
    assert ": agree" in torch_text, torch_text
    assert "jax backend in kernel: False" in _text(_cell(nb, "probe-jax"))

    from transformers import BertForPreTraining, BertTokenizerFast

    model = BertForPreTraining.from_pretrained(export_dir)
    assert model.config.vocab_size == len(BertTokenizerFast.from_pretrained(export_dir))


FAKE_NVIDIA_SMI = """#!/bin/sh
# Stands in for nvidia-smi on a GPU runtime whose JAX cannot use the GPU (there is none here).
echo "{driver}"
"""
SETUP_CELLS = ("parameters", "install", "devices")  # up to the point where a runtime is set up


def _setup_notebook(values: dict):
    """The notebook's first cells only (parameters, install, devices), with `values` injected."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells = [cell for cell in nb.cells if cell.get("id") in SETUP_CELLS]
    inject_parameters(nb, values)
    return nb


def _kernel_in(venv_python: Path, jupyter_dir: Path) -> str:
    """A kernelspec that starts ipykernel with `venv_python`; its name (JUPYTER_PATH must hold jupyter_dir)."""
    spec_dir = jupyter_dir / "kernels" / "install-test"
    spec_dir.mkdir(parents=True)
    argv = [str(venv_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec_dir.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "install test", "language": "python"})
    )
    return "install-test"


def test_install_branch_clones_and_installs_the_checkout(tmp_path, monkeypatch):
    """INSTALL=True, as on Colab: clone the repository, pick the extras for this machine (the CPU here),
    pip-install it into the kernel's environment and start JAX in a subprocess. Offline: the clone comes
    from this checkout's commits (file://), and the kernel's venv sees this environment's packages
    through a .pth file, so pip finds every dependency installed and fetches nothing."""
    NotebookClient = pytest.importorskip("nbclient").NotebookClient
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    venv_python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    kernel = _kernel_in(venv_python, tmp_path / "jupyter")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # nothing may be downloaded
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # (pip reads 0 as: no isolation) setuptools is installed
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.chdir(tmp_path)
    clone = tmp_path / "clone"
    nb = _setup_notebook({"INSTALL": True, "REPO_URL": REPO_ROOT.as_uri(), "REPO_DIR": str(clone)})

    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel).execute()

    install = _text(_cell(nb, "install"))
    assert "runtime: cpu (no GPU or TPU found); pip extras: torch" in install, install
    assert f"working directory: {clone}" in install
    located = subprocess.run(
        [str(venv_python), "-c", "import bert_flax; print(bert_flax.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert located.stdout.strip() == str(clone / "bert_flax" / "__init__.py")  # installed from the clone
    assert "backend: cpu" in _text(_cell(nb, "devices"))


def test_an_accelerator_runtime_with_a_cpu_only_jax_stops(tmp_path, monkeypatch):
    """A GPU runtime (a fake nvidia-smi) where JAX finds only the CPU stops at the devices cell, saying so."""
    NotebookClient = pytest.importorskip("nbclient").NotebookClient
    CellExecutionError = pytest.importorskip("nbclient.exceptions").CellExecutionError
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text(FAKE_NVIDIA_SMI.format(driver="550.54.15"))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    nb = _setup_notebook({"INSTALL": False})
    with pytest.raises(CellExecutionError, match="this is a GPU runtime .* but JAX sees only the CPU"):
        NotebookClient(
            nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}
        ).execute()
    assert "runtime: gpu (NVIDIA driver 550.54.15: CUDA 12 wheels); pip extras: torch,cuda12" in _text(
        _cell(nb, "install")
    )
