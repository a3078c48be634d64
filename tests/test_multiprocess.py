"""Two processes × 4 CPU devices (jax.distributed, gloo) train like one process × 8 devices.

The pair is two `bert-flax pretrain` subprocesses on localhost, each feeding only its half of
every global batch. One test, as a pair costs half a minute on a small CPU: the pair resumes a
single-process checkpoint, a single process resumes the pair's, and both loss traces equal that of
an uninterrupted single-process run of the same config.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import REPO_ROOT, smoke_config
from transformers import FlaxBertForPreTraining

from bert_flax.config import load_config
from bert_flax.engine.parallel import initialize_distributed
from bert_flax.errors import UserError
from bert_flax.pretrain import pretrain
from bert_flax.run.metrics import read_metrics

NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 4
RUN_OVERRIDES = ("train.steps=6", "checkpoint.every=2", "eval.every=2")
# gloo all-reduces across processes in another order than XLA does within one: float32 sums differ
# by a few ulps (measured: ≤ 1e-7 relative on loss and grad_norm, ≤ 1.2e-7 on any parameter). A wrong
# or duplicated slice of the batch, or a process' gradients left out, moves the loss by > 1e-3.
RTOL = 1e-5
PARAMS_ATOL = 1e-5
PAIR_TIMEOUT_S = 240
LOG_TAIL_CHARS = 3000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _failure_report(message: str, logs: list[Path]) -> str:
    tails = [f"--- {log.name} ---\n{log.read_text(errors='replace')[-LOG_TAIL_CHARS:]}" for log in logs]
    return "\n".join([message, *tails])


def run_pair(corpus_path: Path, cache_dir: Path, run_dir: Path, stop_at: int | None = None) -> None:
    """`bert-flax pretrain` in 2 processes; both are killed as soon as one fails or time runs out."""
    port = _free_port()
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "bert_flax.cli", "pretrain", "--debug", "--config"]
    command += [str(REPO_ROOT / "configs" / "smoke.yaml"), "--run-dir", str(run_dir)]
    command += [f"data.path={corpus_path}", f"data.cache_dir={cache_dir}", *RUN_OVERRIDES]
    command += ["parallel.distributed=true", f"parallel.coordinator_address=localhost:{port}"]
    command += [f"parallel.num_processes={NUM_PROCESSES}"]
    command += ["--stop-at", str(stop_at)] if stop_at is not None else []
    logs = [run_dir.parent / f"{run_dir.name}.process{i}.log" for i in range(NUM_PROCESSES)]
    processes: list[subprocess.Popen] = []
    try:
        for index, log in enumerate(logs):
            with log.open("w") as out:
                processes.append(
                    subprocess.Popen(
                        [*command, f"parallel.process_id={index}"],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=REPO_ROOT,
                    )
                )
        deadline = time.monotonic() + PAIR_TIMEOUT_S
        while any(p.poll() is None for p in processes):
            failed = [i for i, p in enumerate(processes) if p.poll() not in (None, 0)]
            if failed:
                pytest.fail(_failure_report(f"process {failed[0]} exited with {processes[failed[0]].returncode}", logs))
            if time.monotonic() > deadline:
                pytest.fail(_failure_report(f"the pair ran past {PAIR_TIMEOUT_S} s", logs))
            time.sleep(0.2)
        codes = [p.returncode for p in processes]
        if codes != [0] * NUM_PROCESSES:
            pytest.fail(_failure_report(f"exit codes {codes}", logs))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def assert_same_trace(run_dir: Path, reference: Path) -> None:
    """Same (step, split) events, written once each; loss and grad_norm equal up to RTOL."""
    records, expected = read_metrics(run_dir), read_metrics(reference)
    assert [(r["step"], r["split"]) for r in records] == [(r["step"], r["split"]) for r in expected]
    for record, want in zip(records, expected):
        where = f"step {want['step']} {want['split']}"
        assert record["loss"] == pytest.approx(want["loss"], rel=RTOL), where
        if want["split"] == "train":
            assert record["grad_norm"] == pytest.approx(want["grad_norm"], rel=RTOL), where


def assert_same_final(run_dir: Path, reference: Path) -> None:
    params = FlaxBertForPreTraining.from_pretrained(run_dir / "final").params
    expected = FlaxBertForPreTraining.from_pretrained(reference / "final").params
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=PARAMS_ATOL), params, expected)


def checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def stopped_copy(run_dir: Path, step: int, dest: Path) -> Path:
    """A copy of `run_dir` as if it had been stopped right after step `step`'s checkpoint."""
    shutil.copytree(run_dir, dest)
    for later in checkpoint_steps(dest):
        if later > step:
            shutil.rmtree(dest / "checkpoints" / str(later))
    shutil.rmtree(dest / "final")
    return dest


@pytest.mark.slow
def test_pair_matches_one_process_and_checkpoints_cross_over(
    corpus_path: Path, smoke_cache: Path, tmp_path: Path
) -> None:
    """One process trains 6 steps; the pair resumes its step-2 checkpoint, one process resumes the
    pair's step-4 checkpoint. All three traces and final/s are the same."""
    assert jax.device_count() == NUM_PROCESSES * DEVICES_PER_PROCESS, (
        "run the tests with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    )
    config = smoke_config(corpus_path, smoke_cache, *RUN_OVERRIDES)
    reference = tmp_path / "single"
    assert pretrain(config, reference, show_progress=False).finished  # also fills the cache the pair reads

    pair = stopped_copy(reference, 2, tmp_path / "pair")
    run_pair(corpus_path, smoke_cache, pair)
    assert checkpoint_steps(pair) == [2, 4, 6]
    assert_same_trace(pair, reference)  # steps 3-6: the pair's, each event once (only process 0 logs)
    assert_same_final(pair, reference)  # process 0 saved params that live on both processes' devices

    resumed = stopped_copy(pair, 4, tmp_path / "pair_then_single")
    assert pretrain(config, resumed, show_progress=False).finished
    assert_same_trace(resumed, reference)
    assert_same_final(resumed, reference)


ROWS_SCRIPT = """
import sys
import jax
import numpy as np
from bert_flax.config import load_config
from bert_flax.data.dataset import build_pretraining_data
from bert_flax.pretrain import host_batches

config_path, out, port, index = sys.argv[1:5]
jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=int(index))
arrays = {}
for name, packing in (("unpacked", []), ("packed", ["data.packing=true", "model.impl=fast"])):
    config = load_config(config_path, [*sys.argv[5:], *packing])
    batches = host_batches(build_pretraining_data(config, progress=False), 3)
    for step in range(3, 3 + 4):
        batch, _ = next(batches)
        arrays.update({f"{name}/{step}/{key}": value for key, value in batch.items()})
np.savez(out, **arrays)
"""
PACKING = ["data.packing=true", "model.impl=fast"]  # as in ROWS_SCRIPT


def test_each_process_builds_its_rows_and_they_concatenate_to_the_global_batch(
    corpus_path: Path, smoke_cache: Path, tmp_path: Path
) -> None:
    """Under jax.distributed, process i of 2 builds rows [i·B/2, (i+1)·B/2) of every batch itself,
    bit-equal to the one-process batch (steps 3-6 span the end of the first epoch at this size), with
    one example per row and with packed rows (each process packs the groups from lengths, then gathers
    and masks only its rows)."""
    overrides = [f"data.path={corpus_path}", f"data.cache_dir={smoke_cache}", "train.batch_size=256"]
    from bert_flax.data.dataset import build_pretraining_data
    from bert_flax.data.pipeline import DataPosition

    streams = {
        name: build_pretraining_data(load_config(REPO_ROOT / "configs" / "smoke.yaml", [*overrides, *extra]), False).train
        for name, extra in (("unpacked", []), ("packed", PACKING))
    }
    assert 3 * 256 < streams["unpacked"].examples_per_epoch < 7 * 256, "steps 3-6 should cross an epoch boundary"
    assert 3 * 256 < streams["packed"].row_stream.rows_per_epoch() < 7 * 256, "and so should the packed rows"
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
    outs = [tmp_path / f"rows{i}.npz" for i in range(NUM_PROCESSES)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ROWS_SCRIPT, str(REPO_ROOT / "configs" / "smoke.yaml"), str(out), str(port), str(i), *overrides],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i, out in enumerate(outs)
    ]
    for process in processes:
        output, _ = process.communicate(timeout=PAIR_TIMEOUT_S)
        assert process.returncode == 0, output[-LOG_TAIL_CHARS:]
    halves = [np.load(out) for out in outs]
    for name, stream in streams.items():
        batches = stream.iterate(DataPosition(step=3))
        for step in range(3, 7):
            expected, _ = next(batches)
            for key, value in expected.items():
                got = np.concatenate([half[f"{name}/{step}/{key}"] for half in halves])
                assert got.dtype == value.dtype, key
                np.testing.assert_array_equal(got, value, err_msg=f"{name} step {step} {key}")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["parallel.num_processes=-1"], "parallel.num_processes must be non-negative"),
        (["parallel.process_id=-2"], "parallel.process_id must be at least -1"),
        (["parallel.num_processes=2", "parallel.process_id=2"], "below parallel.num_processes=2"),
        (["parallel.coordinator_address=localhost"], "must be host:port"),
    ],
)
def test_launch_keys_are_validated(overrides: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_config(None, overrides)


def test_initialize_distributed_passes_only_the_keys_that_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    monkeypatch.delenv("JAX_CPU_COLLECTIVES_IMPLEMENTATION", raising=False)
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    initialize_distributed(load_config(None, ["parallel.distributed=true"]).parallel)
    given = ["parallel.coordinator_address=10.0.0.1:1234", "parallel.num_processes=2", "parallel.process_id=0"]
    initialize_distributed(load_config(None, given).parallel)
    assert calls == [{}, {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 0}]
    assert jax.config.jax_cpu_collectives_implementation == "gloo"


def test_nothing_to_auto_detect_names_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cluster(**kwargs):
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", no_cluster)
    with pytest.raises(UserError, match="set parallel.coordinator_address, parallel.num_processes"):
        initialize_distributed(load_config(None, ["parallel.distributed=true"]).parallel)
