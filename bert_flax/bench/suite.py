"""`bert-flax bench --suite [NAME]`: a fixed matrix (suite_matrix.py) timed on whatever JAX sees, each row in
its own process, so an out-of-memory or a failed compile is a row that says so, not a dead suite.

This process never imports JAX (it would hold the accelerator the rows need): a probe process reports the
devices and the peak, a checks process compares fast with hf, then each row runs — ours and in-process
baselines through suite_worker, external baselines (PyTorch) through their own command. The result is one
dict (suite_report.py renders it), rewritten to `--out` after every row.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import bert_flax
from bert_flax.bench.baselines import BASELINES, StepShape, external_report, run_external
from bert_flax.bench.processes import Finished, run_process
from bert_flax.bench.suite_matrix import SUITES, PlannedRow, Suite, base_overrides, default_suite, plan
from bert_flax.bench.suite_report import finish, output_paths, render_markdown
from bert_flax.config import Config, load_config
from bert_flax.disk import check_writable_dir, write_file
from bert_flax.errors import UserError

UNLIMITED_SECONDS = 3600.0  # how long one process may run when the suite has no time limit
CHECK_BATCH = 8  # rows of the batch the checks compare fast and hf on
SIMULATED_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def child_env(visible_gpu: str | None = None) -> dict[str, str]:
    """The processes' environment: this package importable, real devices only (a simulated CPU device
    count, as the tests set in XLA_FLAGS, is dropped), and only `visible_gpu` when it is given."""
    env = dict(os.environ)
    package_root = str(Path(bert_flax.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    flags = [flag for flag in env.get("XLA_FLAGS", "").split() if not flag.startswith(SIMULATED_DEVICES_FLAG)]
    env["XLA_FLAGS"] = " ".join(flags)
    if visible_gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible_gpu
    return env


@dataclasses.dataclass
class _Run:
    """One suite run: the user's base config, the processes' environment, the probe's answer, the clock."""

    config_path: str | None
    overrides: list[str]
    base: Config
    env: dict[str, str]
    probe: dict[str, Any] = dataclasses.field(default_factory=dict)
    deadline: float | None = None  # time.monotonic() past which no process starts

    def timeout(self) -> float | None:
        """How long the next process may run; None once the time limit is spent."""
        if self.deadline is None:
            return UNLIMITED_SECONDS
        left = self.deadline - time.monotonic()
        return left if left >= 1 else None


def _worker(job: dict[str, Any], timeout: float, env: dict[str, str]) -> tuple[dict[str, Any] | None, Finished]:
    """A suite_worker job: its JSON, or None and why not. transformers' Flax classes need no PyTorch, and
    USE_TORCH=0 keeps transformers from importing it (seconds per process)."""
    argv = [sys.executable, "-m", "bert_flax.bench.suite_worker", json.dumps(job)]
    finished = run_process(argv, timeout, {**env, "USE_TORCH": "0"})
    if finished.error:
        return None, finished
    try:
        return json.loads(finished.stdout.splitlines()[-1]), finished
    except (IndexError, ValueError):
        return None, dataclasses.replace(finished, error="exit 0 without its JSON line on stdout")


def check_options(
    name: str | None, baselines: list[str] | None, out: str | None, minutes: float | None,
    peak: float | None = None, measure_peak: bool = False, steps: int | None = None, warmup: int | None = None,
) -> None:
    """Bad options, refused before any process starts."""
    if name is not None and name not in SUITES:
        raise UserError(f"--suite must be one of {', '.join(SUITES)}; got {name!r}")
    unknown = [b for b in baselines or [] if b not in BASELINES]
    if unknown:
        raise UserError(f"--baseline must be among {', '.join(BASELINES)}; got {', '.join(unknown)}")
    if minutes is not None and minutes <= 0:
        raise UserError(f"--time-limit must be a positive number of minutes; got {minutes:g}")
    if (steps is not None and steps < 1) or (warmup is not None and warmup < 0):
        raise UserError(f"--steps must be ≥ 1 and --warmup ≥ 0; got {steps}, {warmup}")
    if peak is not None and (measure_peak or peak <= 0):
        raise UserError("--peak-tflops must be positive and cannot be combined with --measure-peak")
    if out is not None:
        for path in output_paths(out):
            check_writable_dir(path.parent, "--out's directory", "pass another --out")


def _check_rows(run: _Run, names: list[str], baselines: list[str]) -> None:
    """Every row's config loads with the user's overrides (one can make a row invalid): refused up front."""
    for name in names:
        for row in sorted(plan(SUITES[name], baselines), key=lambda row: row.baseline is not None):  # ours first
            try:
                load_config(run.config_path, [*run.overrides, *row.overrides])
            except UserError as err:
                raise UserError(f"suite {name}, row {row.name} at {row.shape.label}: {err}") from None


def _row_result(row: PlannedRow, finished: Finished | None, report: dict[str, Any] | None, why: str | None) -> dict:
    """A row of the result: its place in the matrix, then its report, or why it has none."""
    result = {"shape": row.shape.label, "preset": row.shape.preset, "seq_len": row.shape.seq_len,
              "batch_size": row.shape.batch_size, "row": row.name, "baseline": row.baseline is not None,
              "data": row.data, "seconds": None if finished is None else round(finished.seconds, 1)}
    if report is not None:
        return {**result, "status": "ok", **report}
    if finished is None:
        return {**result, "status": "skipped", "error": why}
    return {**result, "status": "failed", "error": why, "stderr_tail": finished.stderr_tail}


def _external_row(row: PlannedRow, suite: Suite, run: _Run, timeout: float) -> dict[str, Any]:
    """A baseline that is its own program (PyTorch): its command at the row's shape, its JSON read back."""
    baseline, backend = BASELINES[row.baseline], run.probe["environment"]["backend"]
    why_not = baseline.available(backend)
    if why_not:
        return _row_result(row, None, None, f"not run: {why_not}")
    shape = StepShape(
        preset=row.shape.preset,
        vocab_size=suite.vocab_size,
        seq_len=row.shape.seq_len,
        batch_size=row.shape.batch_size,
        mask_prob=run.base.masking.mask_prob,
        dtype=suite.dtype,
        steps=suite.steps,
        warmup=suite.warmup,
        seed=run.base.train.seed,
        peak_tflops=run.probe["peak_tflops"],
    )
    finished = run_external(baseline, shape, backend, timeout, run.env)
    if finished.error:
        return _row_result(row, finished, None, finished.error)
    try:
        report = external_report(finished.stdout)
    except ValueError as err:  # json's errors are ValueErrors too
        return _row_result(row, finished, None, f"exit 0, but its output {err}")
    report.setdefault("real_tokens_per_second", report["tokens_per_second"])  # full-length rows: no padding
    return _row_result(row, finished, report, None)


def _jax_row(row: PlannedRow, suite: Suite, run: _Run, timeout: float) -> dict[str, Any]:
    """Ours or an in-process baseline: suite_worker's row job."""
    job = {"job": "row", "config": run.config_path, "overrides": [*run.overrides, *row.overrides],
           "name": row.baseline or "ours", "data": row.data, "steps": suite.steps, "warmup": suite.warmup,
           "peak_tflops": run.probe["peak_tflops"]}
    report, finished = _worker(job, timeout, run.env)
    return _row_result(row, finished, report, finished.error)


def _checks(suite: Suite, run: _Run) -> list[dict[str, Any]]:
    """fast vs hf on one batch of the first shape (checks.py), or one check saying why not."""
    ours = {row.name: row for row in reversed(suite.ours)}  # the first row of each name
    name = "loss fast vs hf"
    if "fast" not in ours or "hf" not in ours:
        return [{"name": name, "status": "not applicable", "detail": "the suite has no fast and hf rows"}]
    base = [*run.overrides, *base_overrides(suite, suite.shapes[0])]
    job = {"job": "checks", "config": run.config_path, "batch_size": min(CHECK_BATCH, suite.shapes[0].batch_size),
           "fast_overrides": [*base, *ours["fast"].overrides], "hf_overrides": [*base, *ours["hf"].overrides]}
    timeout = run.timeout()
    if timeout is None:
        return [{"name": name, "status": "not applicable", "detail": "the time limit was reached"}]
    answer, finished = _worker(job, timeout, run.env)
    if answer is None:
        return [{"name": name, "status": "FAIL", "detail": f"the checks process failed: {finished.error}"}]
    return answer["checks"]


def _write(result: dict[str, Any], out: str | None) -> None:
    if out is not None:
        markdown, as_json = output_paths(out)
        write_file(markdown, render_markdown(result))
        write_file(as_json, json.dumps(result, indent=1) + "\n")


def _progress(message: str) -> None:
    print(f"[bench --suite] {message}", file=sys.stderr, flush=True)


def _start(run: _Run, name: str | None, peak_tflops: float | None, measure_peak: bool) -> str:
    """The probe: which suite runs here, on what, against which peak (run.probe); returns the suite's name."""
    probe_job = {"job": "probe", "suite": name, "peak_tflops": peak_tflops, "measure_peak": measure_peak}
    probe, finished = _worker(probe_job, UNLIMITED_SECONDS, run.env)
    if probe is None:
        raise UserError(f"JAX could not start here: the probe process failed ({finished.error})")
    run.probe, environment = probe, probe["environment"]
    if environment["backend"] == "gpu" and environment["devices"] > 1:  # rows time one GPU, as PyTorch does
        run.env = child_env(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0])
    return probe["suite"]


def _result_header(run: _Run, name: str, suite: Suite, minutes: float | None, command: str, baselines: list) -> dict:
    return {"suite": name, "title": suite.title, "command": command,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "environment": run.probe["environment"], "peak_tflops": run.probe["peak_tflops"],
            "peak_source": run.probe["peak_source"], "dtype": suite.dtype, "vocab_size": suite.vocab_size,
            "steps": suite.steps, "warmup": suite.warmup, "time_limit_minutes": minutes, "baselines": baselines}


def run_suite(
    name: str | None = None,
    config_path: str | None = None,
    overrides: list[str] | None = None,
    baselines: list[str] | None = None,
    peak_tflops: float | None = None,
    measure_peak: bool = False,
    time_limit_minutes: float | None = None,
    out: str | None = None,
    steps: int | None = None,
    warmup: int | None = None,
    command: str = "bert-flax bench --suite",
    progress: Callable[[str], None] = _progress,
) -> dict[str, Any]:
    """Run a suite (None: the default for the backend) and return its result (suite_report.finish's form);
    `baselines` None runs every registered one; `steps`/`warmup` replace the suite's. The user's config and
    overrides are every row's base."""
    check_options(name, baselines, out, time_limit_minutes, peak_tflops, measure_peak, steps, warmup)
    overrides, baselines = list(overrides or []), list(BASELINES) if baselines is None else baselines
    run = _Run(config_path, overrides, load_config(config_path, overrides), child_env())
    _check_rows(run, [name] if name else sorted({default_suite("cpu"), default_suite("gpu")}), baselines)
    started = time.monotonic()
    name = _start(run, name, peak_tflops, measure_peak)
    suite = dataclasses.replace(SUITES[name], steps=steps or SUITES[name].steps,
                                warmup=SUITES[name].warmup if warmup is None else warmup)
    minutes = time_limit_minutes or suite.time_limit_minutes
    run.deadline = None if minutes is None else started + 60 * minutes
    environment = run.probe["environment"]
    progress(f"{name} suite on {environment['devices']} × {environment['device_kind']}: checks first")
    checks_started = time.monotonic()
    result = {**_result_header(run, name, suite, minutes, command, baselines), "checks": _checks(suite, run)}
    result.update(probe_seconds=round(checks_started - started, 1), rows=[])
    result["checks_seconds"] = round(time.monotonic() - checks_started, 1)
    rows = plan(suite, baselines)
    for index, row in enumerate(rows, 1):
        timeout = run.timeout()
        if timeout is None:
            done = _row_result(row, None, None, f"not run: the suite's {minutes:g}-minute time limit was reached")
        elif row.baseline is not None and BASELINES[row.baseline].external:
            done = _external_row(row, suite, run, timeout)
        else:
            done = _jax_row(row, suite, run, timeout)
        result["rows"].append(done)
        _write(finish(result), out)
        rate = done.get("tokens_per_second")
        outcome = f"{rate:,.0f} tokens/s" if rate else f"{done['status']}: {done.get('error')}"
        progress(f"[{index}/{len(rows)}] {row.name} at {row.shape.label}: {outcome} ({done['seconds'] or 0:.0f} s)")
    result = finish({**result, "total_seconds": round(time.monotonic() - started, 1)})
    _write(result, out)
    return result
