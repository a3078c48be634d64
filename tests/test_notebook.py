"""notebooks/colab_quickstart.ipynb: committed clean and in sync with its generator, and it runs top to bottom.

The run executes every cell with nbclient in a python3 kernel on the CPU, with the smoke config and
tiny overrides injected after the `parameters` cell (as papermill would), from the repository root.
"""

from __future__ import annotations

import importlib.util
import os
import sys
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
