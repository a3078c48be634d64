"""The baselines `bert-flax bench --baseline NAME` and `--suite` time next to ours: one entry each, name →
how to time it. A baseline is either a JAX step timed in our process (`mode`), or another program run in a
subprocess (`command`) that prints one JSON object holding one result block with `bert-flax bench`'s keys,
as scripts/bench_pytorch.py does. Entries import their code when used, so listing them (the CLI's help, the
suite's parent process) needs no JAX."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from bert_flax.bench.processes import Finished, run_process

if TYPE_CHECKING:
    from bert_flax.bench.timing import Mode

PYTORCH_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_pytorch.py"


@dataclasses.dataclass(frozen=True)
class StepShape:
    """What a baseline in another process must reproduce: model size, batch, masking, dtype and timing."""

    preset: str
    vocab_size: int
    seq_len: int
    batch_size: int
    mask_prob: float
    dtype: str
    steps: int
    warmup: int
    seed: int
    peak_tflops: float | None


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A step timed next to ours on the same shapes; exactly one of `mode` and `command`."""

    help: str
    mode: Callable[..., "Mode"] | None = None  # (config, pretrained model, batch factory, prefetch) → timed Mode
    command: Callable[[StepShape, str], list[str]] | None = None  # (shape, backend) → argv of the other process
    available: Callable[[str], str | None] = lambda backend: None  # backend → why it cannot run here, or None
    # Variables naming the other process's compilation caches: each run gets them empty, so its first step
    # is a cold compile every time, as ours is (JAX keeps no compilation cache unless one is configured).
    cache_env: tuple[str, ...] = ()

    @property
    def external(self) -> bool:
        return self.command is not None


def run_external(baseline: Baseline, shape: StepShape, backend: str, timeout: float, env: dict[str, str]) -> Finished:
    """The baseline's process at `shape`, its compilation caches (`cache_env`) in a fresh directory."""
    with tempfile.TemporaryDirectory(prefix="bert_flax-baseline-") as caches:
        fresh = {name: os.path.join(caches, name.lower()) for name in baseline.cache_env}
        return run_process(baseline.command(shape, backend), timeout, {**env, **fresh})


def external_report(stdout: str) -> dict[str, Any]:
    """The result block of an external baseline's JSON (its last JSON line; the one dict-valued key), with
    `first_step_seconds` (compilation or eager start-up) as `compile_seconds`."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError("printed no JSON object")
    record = json.loads(lines[-1])
    blocks = [value for value in record.values() if isinstance(value, dict)]
    if len(blocks) != 1:
        raise ValueError(f"printed {len(blocks)} result blocks, not one")
    report = dict(blocks[0])
    report.setdefault("compile_seconds", report.get("first_step_seconds"))
    return report


def _hf_example(*args: Any) -> "Mode":
    from bert_flax.bench.hf_example import hf_example_mode

    return hf_example_mode(*args)


def _pytorch_available(backend: str) -> str | None:
    if backend not in ("gpu", "cpu"):
        return f"PyTorch would run on the host, not on the {backend}"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install -e '.[torch]')"
    if not PYTORCH_SCRIPT.is_file():
        return f"{PYTORCH_SCRIPT} is missing (run from a checkout of the repository)"
    return None


def _pytorch(compile: bool) -> Callable[[StepShape, str], list[str]]:
    """scripts/bench_pytorch.py's command line for a shape: CUDA on a GPU backend, else the CPU."""

    def command(shape: StepShape, backend: str) -> list[str]:
        argv = [sys.executable, str(PYTORCH_SCRIPT), "--json", "--device", "cuda" if backend == "gpu" else "cpu"]
        argv += ["--preset", shape.preset, "--vocab-size", str(shape.vocab_size), "--seq-len", str(shape.seq_len)]
        argv += ["--batch-size", str(shape.batch_size), "--mask-prob", str(shape.mask_prob), "--dtype", shape.dtype]
        argv += ["--steps", str(shape.steps), "--warmup", str(shape.warmup), "--seed", str(shape.seed)]
        argv += [] if shape.peak_tflops is None else ["--peak-tflops", str(shape.peak_tflops)]
        return argv + (["--compile"] if compile else [])

    return command


BASELINES: dict[str, Baseline] = {
    "hf-example": Baseline(
        "transformers' Flax example step (run_mlm_flax.py: full-vocabulary logits, one-hot loss, adamw)",
        mode=_hf_example,
    ),
    "pytorch-eager": Baseline(
        "PyTorch BertForPreTraining through scripts/bench_pytorch.py (SDPA attention, AdamW, bf16 autocast)",
        command=_pytorch(compile=False),
        available=_pytorch_available,
    ),
    "pytorch-compile": Baseline(
        "the same with torch.compile",
        command=_pytorch(compile=True),
        available=_pytorch_available,
        cache_env=("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"),
    ),
}
