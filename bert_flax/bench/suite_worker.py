"""One process of `bert-flax bench --suite`: `python -m bert_flax.bench.suite_worker JOB`, JOB a JSON object.
It prints one JSON line on stdout; a failure ends stderr with one `error: ...` line and a non-zero exit.

Jobs: "probe" (the devices, versions and the peak TFLOP/s: known for the device kind, given, else measured),
"checks" (checks.loss_agreement) and "row" (run.bench_row: one step timed alone).
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

from bert_flax.bench.suite_matrix import SUITES, default_suite
from bert_flax.config import load_config
from bert_flax.errors import EXIT_BAD_INPUT, UserError, first_line


def _probe(job: dict[str, Any]) -> dict[str, Any]:
    """The devices, which suite runs (the named one, else the backend's default) and the peak for its dtype."""
    import jax
    import jax.numpy as jnp

    from bert_flax.bench.device import measure_peak_tflops, resolve_peak_tflops
    from bert_flax.bench.environment import describe

    suite = job["suite"] or default_suite(jax.default_backend())
    dtype = jnp.dtype(SUITES[suite].dtype)
    peak, source = resolve_peak_tflops(job["peak_tflops"], job["measure_peak"], dtype)
    if peak is None:  # a device kind not in peaks.py: measured, so that every row has an MFU
        peak, source = measure_peak_tflops(dtype), "measured"
    return {"suite": suite, "environment": describe(), "peak_tflops": peak, "peak_source": source}


def _checks(job: dict[str, Any]) -> dict[str, Any]:
    from bert_flax.bench.checks import loss_agreement

    fast, hf = (load_config(job["config"], job[key]) for key in ("fast_overrides", "hf_overrides"))
    return {"checks": loss_agreement(fast, hf, fast.tokenizer.vocab_size, job["batch_size"])}


def _row(job: dict[str, Any]) -> dict[str, Any]:
    config = load_config(job["config"], job["overrides"])  # bad overrides fail here, before JAX starts
    from bert_flax.bench.run import bench_row

    return bench_row(config, job["name"], job["steps"], job["warmup"], job["data"], job["peak_tflops"])


JOBS = {"probe": _probe, "checks": _checks, "row": _row}


def main(argv: list[str]) -> int:
    try:
        job = json.loads(argv[0])
        print(json.dumps(JOBS[job["job"]](job)), flush=True)
        return 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 — any failure is this job's result, in one line
        traceback.print_exc()
        print(f"error: {type(err).__name__}: {first_line(err, 300)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
