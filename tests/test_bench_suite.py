"""`bert-flax bench --suite`: the smoke suite end to end on this CPU — every kind of row (ours on synthetic
and real data, an in-process baseline, PyTorch through its script, a baseline added as one registry entry, a
row forced to fail) — then the matrix of every suite, the failure lines of a row's process, the time limit,
the known peaks, and that the suite's own process never imports JAX."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT

from bert_flax.bench.baselines import BASELINES, PYTORCH_SCRIPT, Baseline, StepShape, external_report, run_external
from bert_flax.bench.peaks import known_peak_tflops
from bert_flax.bench.processes import run_process
from bert_flax.bench.suite import run_suite
from bert_flax.bench.suite_matrix import OURS_ROWS, SUITES, OursRow, plan
from bert_flax.cli import main
from bert_flax.config import load_config

# An external baseline as one registry entry: a program that reports B × L tokens per 0.5 s step.
FIXED_RATE = """
import json, sys
tokens = int(sys.argv[1]) * int(sys.argv[2])
step = {"first_step_seconds": 0.1, "step_seconds_median": 0.5, "step_seconds_p10": 0.5, "step_seconds_p90": 0.5,
        "tokens_per_second": tokens / 0.5, "mfu": None, "device_peak_bytes": None, "host_peak_rss_bytes": 1}
print(json.dumps({"system": "fixed", "fixed": step}))
"""
BROKEN_ROW = OursRow("hf broken", ("model.impl=hf", "data.path=/nonexistent/corpus.txt"), data="real")
ROWS = {"hf", "fast packed", "hf broken", "hf-example", "pytorch-eager", "fixed-rate"}


def _fixed_rate(shape: StepShape, backend: str) -> list[str]:
    return [sys.executable, "-c", FIXED_RATE, str(shape.batch_size), str(shape.seq_len)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One `bench --suite smoke` through the CLI, with a registered baseline and a row that must fail added:
    its exit code, stdout, and the --out files."""
    out = tmp_path_factory.mktemp("suite") / "smoke"
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setitem(BASELINES, "fixed-rate", Baseline("0.5 s per step", command=_fixed_rate))
        patch.setitem(SUITES, "smoke", dataclasses.replace(SUITES["smoke"], ours=(*SUITES["smoke"].ours, BROKEN_ROW)))
        baselines = ["--baseline", "hf-example", "--baseline", "pytorch-eager", "--baseline", "fixed-rate"]
        code = main(["bench", "--suite", "smoke", *baselines, "--out", str(out)])
    return {
        "code": code,
        "stdout": stdout.getvalue(),
        "markdown": out.with_suffix(".md").read_text(encoding="utf-8"),
        "result": json.loads(out.with_suffix(".json").read_text(encoding="utf-8")),
    }


def _table(markdown: str) -> dict[str, dict[str, str]]:
    """The table's rows by their row cell: column → cell."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
    cells = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]
    rows = [dict(zip(header, row, strict=True)) for row in cells]
    return {row["row"]: row for row in rows}


def test_smoke_suite_prints_the_table_it_writes(smoke) -> None:
    assert smoke["code"] == 0
    assert smoke["stdout"] == smoke["markdown"]
    text = smoke["markdown"]
    assert text.startswith("## `bert-flax bench --suite smoke`: ")
    import jax

    assert "**device**: 1 × cpu" in text and f"jax {jax.__version__}" in text and "torch " in text
    assert "float32 (measured: " in text  # a CPU is not in the known peaks: measured, so MFU is filled
    checks = [line for line in text.splitlines() if line.startswith("- ") and " — " in line]
    assert [line.split(" — ")[0] for line in checks] == ["- pass", "- pass", "- not applicable", "- not applicable"]
    table = _table(text)
    assert set(table) == ROWS
    numbers = ("tokens/s", "real tokens/s", "MFU", "step ms (p10–p90)", "compile s", "peak memory")
    for name, row in table.items():
        if name == "hf broken":
            assert all(row[column] == "—" for column in numbers)
            assert row["status"].startswith("failed: exit 2: error: corpus file /nonexistent/corpus.txt")
        else:  # every column filled (the fixed program reports no MFU)
            filled = [row[column] for column in numbers if (name, column) != ("fixed-rate", "MFU")]
            assert row["status"] == "ok" and "—" not in filled, row
    assert table["hf"]["÷ hf-example"].endswith("×") and table["hf-example"]["÷ hf-example"] == "—"


def test_smoke_suite_rows_measure_what_they_say(smoke) -> None:
    result = smoke["result"]
    rows = {row["row"]: row for row in result["rows"]}
    assert set(rows) == ROWS and result["environment"]["backend"] == "cpu" and result["peak_source"] == "measured"
    broken = rows.pop("hf broken")
    assert broken["status"] == "failed" and "does not exist" in broken["stderr_tail"]
    for name, row in rows.items():
        assert row["status"] == "ok" and row["tokens_per_second"] > 0, name
        if name != "fixed-rate":  # the fixed program reports no MFU; the suite passes the peak to the others
            assert row["mfu"] == pytest.approx(row["model_tflops_per_second"] / result["peak_tflops"])
    # A random model's loss: MLM over the vocabulary plus NSP's two classes (a row timing the wrong step, or
    # reporting the MLM loss alone, would be far off).
    assert rows["hf"]["last_loss"] == pytest.approx(math.log(1000) + math.log(2), abs=0.3)
    assert rows["hf"]["real_tokens_per_second"] == rows["hf"]["tokens_per_second"]  # synthetic: no padding
    packed = rows["fast packed"]  # Meditations' pairs fill 64-token rows 86% one per row, 97-99% packed
    assert packed["data"] == "real" and 0.9 * packed["tokens_per_second"] < packed["real_tokens_per_second"]
    assert packed["real_tokens_per_second"] < packed["tokens_per_second"]
    assert packed["attention_kernel"] == packed["expected_attention_kernel"] == "xla"  # no cuDNN on a CPU
    fixed = 8 * 64 / 0.5  # the registered baseline's rate at the smoke shape (B 8, L 64)
    assert rows["hf"]["ratios"]["fixed-rate"] == pytest.approx(rows["hf"]["real_tokens_per_second"] / fixed)
    assert rows["pytorch-eager"]["compile_seconds"] == rows["pytorch-eager"]["first_step_seconds"]


def test_every_suite_row_is_the_config_it_says() -> None:
    """Every row of every suite loads as a config of its shape (a broken matrix fails here, in no time)."""
    accelerator = {(s.preset, s.seq_len, s.batch_size) for s in SUITES["accelerator"].shapes}
    assert accelerator == {("base", 128, 256), ("base", 512, 32), ("large", 512, 32)}  # the matrix
    for name, suite in SUITES.items():
        rows = plan(suite, list(BASELINES))
        assert {row.shape for row in rows} == set(suite.shapes), name
        for row in rows:
            config = load_config(None, list(row.overrides))
            assert (config.model.preset, config.data.max_seq_len, config.train.batch_size) == (
                row.shape.preset, row.shape.seq_len, row.shape.batch_size)
            assert config.model.dtype == suite.dtype and config.model.init == ""
            if row.name.startswith("fast"):
                assert config.model.impl == "fast" and config.model.attention_dropout == 0.0
                assert config.model.scan_layers
    goal = [(row.name, row.shape) for row in plan(SUITES["accelerator"], list(BASELINES))]
    assert goal[0][0] == "fast"  # what matters most runs first: fast and torch.compile at every shape
    assert {(name, s) for name in ("fast", "pytorch-compile") for s in SUITES["accelerator"].shapes} <= set(goal)


def test_packed_rows_run_on_the_corpus_after_the_goals_comparison() -> None:
    """Every suite times `fast packed` at each shape, on the corpus, after `fast` and `pytorch-compile` (the
    goal's comparison, timed first) and before the rest; the smoke suite, which the tests run, has every row
    of OURS_ROWS."""
    for suite in SUITES.values():
        rows = plan(suite, list(BASELINES))
        packed = [row for row in rows if row.name == "fast packed"]
        assert [row.shape for row in packed] == list(suite.shapes)
        assert all(row.data == "real" and "data.packing=true" in row.overrides for row in packed)
        names = list(dict.fromkeys(row.name for row in rows))
        first = names.index("fast packed")
        assert set(names[:first]) <= {"fast", "pytorch-compile"} and "hf" in names[first:]
    assert set(OURS_ROWS) == set(SUITES["smoke"].ours)


def test_pytorch_baselines_run_the_script_at_the_rows_shape() -> None:
    pytest.importorskip("torch")
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_pytorch", PYTORCH_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    shape = StepShape("base", 30522, 512, 32, 0.15, "bfloat16", 20, 3, 0, 989.5)
    for name, compiled in (("pytorch-eager", False), ("pytorch-compile", True)):
        argv = BASELINES[name].command(shape, "gpu")
        assert argv[:2] == [sys.executable, str(PYTORCH_SCRIPT)]
        args = script.parse_args(argv[2:])
        assert (args.preset, args.vocab_size, args.seq_len, args.batch_size) == ("base", 30522, 512, 32)
        assert (args.dtype, args.steps, args.warmup, args.peak_tflops) == ("bfloat16", 20, 3, 989.5)
        assert args.device == "cuda" and args.compile is compiled and args.json
    assert BASELINES["pytorch-eager"].available("tpu").startswith("PyTorch would run on the host")


def test_an_external_baseline_compiles_cold_every_run() -> None:
    """Its compilation caches (`cache_env`) are a fresh empty directory per run, gone afterwards."""
    program = (
        "import json, os; d = os.environ['FAKE_CACHE']; empty = not os.path.exists(d) or not os.listdir(d); "
        "os.makedirs(d, exist_ok=True); open(os.path.join(d, 'kernel'), 'w').close(); "
        "print(json.dumps({'cache': {'dir': d, 'empty': empty}}))"
    )
    baseline = Baseline("reports its cache", command=lambda shape, backend: [sys.executable, "-c", program],
                        cache_env=("FAKE_CACHE",))
    shape = StepShape("tiny", 1000, 64, 8, 0.15, "float32", 1, 0, 0, None)
    runs = [external_report(run_external(baseline, shape, "cpu", 30, {"PATH": "/usr/bin"}).stdout) for _ in range(2)]
    assert runs[0]["empty"] and runs[1]["empty"] and runs[0]["dir"] != runs[1]["dir"]
    assert not any(os.path.exists(run["dir"]) for run in runs)


def test_a_rows_process_fails_in_one_line() -> None:
    ended = run_process([sys.executable, "-c", "import sys; print('partial'); sys.exit('boom: out of memory')"], 30)
    assert ended.error == "exit 1: boom: out of memory" and ended.stdout == "partial\n"
    killed = run_process([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], 30)
    assert killed.error == f"killed by {signal.SIGKILL.name} (out of host memory?)"
    start = time.monotonic()
    hung = run_process([sys.executable, "-c", "import time; time.sleep(60)"], 1)
    assert hung.error == "timed out after 1 s (killed)" and time.monotonic() - start < 30


def test_rows_past_the_time_limit_are_skipped_rows() -> None:
    result = run_suite("smoke", baselines=["pytorch-eager"], time_limit_minutes=1e-4, progress=lambda line: None)
    assert result["rows"] and {row["status"] for row in result["rows"]} == {"skipped"}
    assert all("time limit was reached" in row["error"] for row in result["rows"])
    assert result["checks"][0]["status"] == "not applicable"


def test_known_peaks_by_device_kind() -> None:
    assert known_peak_tflops("NVIDIA H200", "bfloat16") == 989.5
    assert known_peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.5
    assert known_peak_tflops("NVIDIA A100-SXM4-80GB", "float32") == 156.0  # TF32
    assert known_peak_tflops("TPU v5 lite", "bfloat16") == 197.0 and known_peak_tflops("TPU v5", "bfloat16") == 459.0
    for unlisted in ("NVIDIA L40S", "NVIDIA H100 NVL", "cpu", "TPU v7x"):  # a variant is not its family
        assert known_peak_tflops(unlisted, "bfloat16") is None


def test_the_suite_process_imports_no_jax() -> None:
    """It plans the rows and builds their commands without JAX, which would hold the accelerator."""
    code = (
        "import sys; from bert_flax.bench import suite; from bert_flax.bench.suite_matrix import SUITES, plan; "
        "[plan(s, list(suite.BASELINES)) for s in SUITES.values()]; suite.check_options('smoke', None, None, None); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'torch', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "[]"
