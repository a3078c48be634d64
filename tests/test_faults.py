"""Real `bert-flax pretrain` processes killed, signalled and crashed mid-save; reruns must resume exactly.

All first runs start together (the uninterrupted reference, a second fresh process, and the
victims), then the victims' reruns together: the machine's cores are shared, not waited on.
A run's trace is every metrics.jsonl record without its timings; equal traces are equal floats.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, TIMING_KEYS, smoke_config

from bert_flax.errors import EXIT_RESUMABLE
from bert_flax.pretrain import pretrain

pytestmark = pytest.mark.slow

STEPS = 30
OVERRIDES = (f"train.steps={STEPS}", "checkpoint.every=3", "checkpoint.keep=20", "eval.every=6")
CRASH_STEP = 6  # the save of this step dies before its commit; step 3's is the one to resume from
TIMEOUT = 600


def trace(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]


def last_train_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    steps = [0]
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # being written
                continue
            if record["split"] == "train":
                steps.append(record["step"])
    return max(steps)


def committed_steps(run_dir: Path) -> list[int]:
    """Checkpoint steps Orbax committed (renamed from their temporary directory)."""
    checkpoints = run_dir / "checkpoints"
    return sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()) if checkpoints.is_dir() else []


@dataclasses.dataclass
class Run:
    """One `bert-flax pretrain` process; `signal_at`: (signal, the train step after which to send it)."""

    run_dir: Path
    argv: list[str]
    signal_at: tuple[int, int] | None = None
    proc: subprocess.Popen | None = None
    log: Path | None = None
    signalled: bool = False
    returncode: int | None = None

    def start(self, env: dict[str, str], name: str) -> None:
        self.log = self.run_dir.parent / f"{self.run_dir.name}.{name}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)

    def poll(self) -> bool:
        """Send the signal when due; True once the process has exited."""
        if self.signal_at and not self.signalled and self.proc.poll() is None:
            signum, step = self.signal_at
            if committed_steps(self.run_dir) and last_train_step(self.run_dir) >= step:
                self.proc.send_signal(signum)
                self.signalled = True
        self.returncode = self.proc.poll()
        return self.returncode is not None

    def output(self) -> str:
        return self.log.read_text()


def run_all(runs: list[Run], env: dict[str, str], name: str) -> None:
    for run in runs:
        run.start(env, name)
    deadline = time.monotonic() + TIMEOUT
    try:
        while not all([run.poll() for run in runs]):  # a list: every run is polled every time
            if time.monotonic() > deadline:
                pytest.fail(f"pretrain processes still running after {TIMEOUT} s")
            time.sleep(0.02)
    finally:
        for run in runs:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, corpus_path: Path, smoke_cache: Path) -> dict:
    root = tmp_path_factory.mktemp("faults")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    rng = random.Random()
    kill_step, term_step = rng.randint(4, 20), rng.randint(4, 20)
    print(f"SIGKILL after train step {kill_step}, SIGTERM after step {term_step}")

    def argv(run_dir: Path, *prefix: str) -> list[str]:
        args = ["pretrain", "--config", str(REPO_ROOT / "configs" / "smoke.yaml"), "--run-dir", str(run_dir)]
        data = [f"data.path={corpus_path}", f"data.cache_dir={smoke_cache}"]
        return [sys.executable, *prefix, *args, *data, *OVERRIDES]

    cli = ("-m", "bert_flax.cli")
    crash = (str(REPO_ROOT / "tests" / "crash_in_checkpoint_save.py"), str(CRASH_STEP))
    runs = {
        "reference": Run(root / "reference", argv(root / "reference", *cli)),
        "again": Run(root / "again", argv(root / "again", *cli)),
        "kill": Run(root / "kill", argv(root / "kill", *cli), (signal.SIGKILL, kill_step)),
        "term": Run(root / "term", argv(root / "term", *cli), (signal.SIGTERM, term_step)),
        "crash": Run(root / "crash", argv(root / "crash", *crash)),
    }
    run_all(list(runs.values()), env, "first")
    victims = {name: runs[name] for name in ("kill", "term", "crash")}
    result = {name: {"first": run.returncode, "first_output": run.output()} for name, run in runs.items()}
    for name, run in victims.items():
        result[name]["committed"] = committed_steps(run.run_dir)
        result[name]["leftovers"] = sorted(p.name for p in (run.run_dir / "checkpoints").iterdir())
        result[name]["signal_step"] = run.signal_at[1] if run.signal_at else None
    reruns = [Run(run.run_dir, argv(run.run_dir, *cli)) for run in victims.values()]
    run_all(reruns, env, "rerun")
    for (name, run), rerun in zip(victims.items(), reruns):
        result[name]["rerun"], result[name]["rerun_output"] = rerun.returncode, rerun.output()
    for name, run in runs.items():
        result[name]["trace"] = trace(run.run_dir) if (run.run_dir / "metrics.jsonl").is_file() else []
    return result


def resumed_from(output: str) -> int:
    match = re.search(r"resuming .* from step (\d+)", output)
    assert match, output
    return int(match.group(1))


def test_two_fresh_processes_give_the_same_trace(faults: dict) -> None:
    assert faults["reference"]["first"] == 0, faults["reference"]["first_output"]
    assert faults["again"]["first"] == 0, faults["again"]["first_output"]
    reference = faults["reference"]["trace"]
    assert [r["step"] for r in reference if r["split"] == "train"] == list(range(1, STEPS + 1))
    assert faults["again"]["trace"] == reference


def test_kill_9_then_rerun_continues_bit_for_bit(faults: dict) -> None:
    kill = faults["kill"]
    assert kill["first"] == -signal.SIGKILL, kill["first_output"]
    assert kill["committed"], "killed before its first checkpoint"
    assert resumed_from(kill["rerun_output"]) == kill["committed"][-1] < STEPS
    assert kill["rerun"] == 0, kill["rerun_output"]
    assert kill["trace"] == faults["reference"]["trace"]


def test_sigterm_checkpoints_the_current_step_and_exits_75(faults: dict) -> None:
    term = faults["term"]
    assert term["first"] == EXIT_RESUMABLE == 75, term["first_output"]
    match = re.search(r"stopped by SIGTERM after saving the checkpoint of step (\d+)", term["first_output"])
    assert match, term["first_output"]
    stopped = int(match.group(1))
    assert term["signal_step"] <= stopped < STEPS and term["committed"][-1] == stopped
    assert "Traceback" not in term["first_output"]
    assert resumed_from(term["rerun_output"]) == stopped
    assert term["rerun"] == 0, term["rerun_output"]
    assert term["trace"] == faults["reference"]["trace"]


def test_a_save_killed_before_its_commit_is_never_used(faults: dict) -> None:
    crash = faults["crash"]
    assert crash["first"] == -signal.SIGKILL, crash["first_output"]
    assert crash["committed"] == [3]
    assert any(name.startswith(f"{CRASH_STEP}.orbax-checkpoint-tmp") for name in crash["leftovers"]), crash
    assert resumed_from(crash["rerun_output"]) == 3
    assert crash["rerun"] == 0, crash["rerun_output"]
    assert crash["trace"] == faults["reference"]["trace"]


def test_ctrl_c_checkpoints_and_resumes_in_process(faults: dict, corpus_path: Path, smoke_cache: Path, tmp_path):
    """SIGINT through the same path, in this process: the Python API reports it in RunResult."""
    config, run_dir = smoke_config(corpus_path, smoke_cache, *OVERRIDES), tmp_path / "interrupted"

    def interrupt_after_step_5() -> None:
        deadline = time.monotonic() + TIMEOUT
        while last_train_step(run_dir) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    handler_before = signal.getsignal(signal.SIGINT)
    threading.Thread(target=interrupt_after_step_5, daemon=True).start()
    stopped = pretrain(config, run_dir, show_progress=False)
    assert stopped.stopped_by == "SIGINT" and not stopped.finished and 5 <= stopped.step < STEPS
    assert committed_steps(run_dir)[-1] == stopped.step and not (run_dir / "final").exists()
    assert signal.getsignal(signal.SIGINT) is handler_before  # put back
    finished = pretrain(config, run_dir, show_progress=False)
    assert finished.finished and finished.stopped_by is None
    assert trace(run_dir) == faults["reference"]["trace"]
