#!/usr/bin/env python
"""Checkpoint save and restore times of a train state to a local directory and to a gs:// prefix,
interleaved in one process, and whether training steps overlap an asynchronous save.

    python scripts/bench_checkpoint.py --local DIR --remote gs://BUCKET/PREFIX [--preset base] [--rounds 2]

The trainer's own objects: `Checkpoints` (Orbax, async; TensorStore's gcs driver on gs://), the state of
`init_train_state` (params and AdamW moments, float32), the jitted step of `make_data_parallel` on
synthetic batches. Per round and target (their order alternates round by round):

- save: `Checkpoints.save` until it returns (the arrays copied off the devices) and until the save is
  finished (`wait`), with nothing else running;
- restore: a new `Checkpoints` on the run dir, `restore_latest` until the arrays are ready;
- overlap: a save, then training steps for as long as Orbax reports it in progress; their median step
  time against the median of steps with no save in flight, and the save's time until finished.

Any gs:// client setup applies (credentials, `STORAGE_EMULATOR_HOST` and `TENSORSTORE_GCS_HTTP_URL` for
an emulator: BENCHMARKS.md has the commands). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import jax
import numpy as np

from bert_flax.bench.synthetic import synthetic_batch
from bert_flax.config import load_config
from bert_flax.engine.checkpoint import Checkpoints
from bert_flax.engine.optim import learning_rate_schedule, make_optimizer
from bert_flax.engine.parallel import make_data_parallel
from bert_flax.engine.step import init_train_state
from bert_flax.model.losses import pretraining_task
from bert_flax.model.pretraining import from_preset
from bert_flax.storage import to_path

VOCAB_SIZE = 30522  # bert-base-uncased's


def state_bytes(state: Any) -> int:
    return sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(state))


class Trainer:
    """The trainer's step on synthetic batches, timed one step at a time."""

    def __init__(self, preset: str, batch_size: int, seq_len: int) -> None:
        overrides = [
            f"model.preset={preset}",
            "model.init=",
            f"train.batch_size={batch_size}",
            f"data.max_seq_len={seq_len}",
            "train.steps=1000",
        ]
        config = load_config(None, overrides)
        pretrained = from_preset(config, VOCAB_SIZE)
        tx = make_optimizer(config.optim, config.train.steps)
        task = pretraining_task(pretrained.model, config.train.objectives, config.model)
        self.parallel = make_data_parallel(task, tx, learning_rate_schedule(config.optim, config.train.steps), config)
        self.state = self.parallel.place_state(init_train_state(pretrained.params, tx, config.train.seed))
        self.batch = self.parallel.place_batch(synthetic_batch(config, VOCAB_SIZE, np.random.default_rng(0)))
        self.step_time()  # compile

    def step_time(self) -> float:
        start = time.perf_counter()
        self.state, metrics = self.parallel.train_step(self.state, self.batch)
        jax.block_until_ready(metrics)
        return time.perf_counter() - start

    def host_state(self) -> Any:
        return self.parallel.host_state(self.state)


def save_times(checkpoints: Checkpoints, step: int, trainer: Trainer) -> dict[str, float]:
    start = time.perf_counter()
    checkpoints.save(step, trainer.host_state(), {"step": step})
    returned = time.perf_counter() - start
    checkpoints.wait()
    return {"save_returns_s": returned, "save_finished_s": time.perf_counter() - start}


def restore_time(run_dir: str, trainer: Trainer) -> float:
    start = time.perf_counter()
    checkpoints = Checkpoints(to_path(run_dir), keep=3)
    restored = checkpoints.restore_latest(trainer.host_state())
    jax.block_until_ready(restored.state)
    elapsed = time.perf_counter() - start
    checkpoints.close()
    return elapsed


def overlap(checkpoints: Checkpoints, step: int, trainer: Trainer) -> dict[str, float]:
    """Steps run while an async save is in progress, against steps with none."""
    quiet = [trainer.step_time() for _ in range(3)]
    start = time.perf_counter()
    checkpoints.save(step, trainer.host_state(), {"step": step})
    during = []
    while checkpoints.manager.is_saving_in_progress():
        during.append(trainer.step_time())
    checkpoints.wait()
    return {
        "steps_during_save": len(during),
        "save_finished_with_steps_s": time.perf_counter() - start,
        "median_step_s_quiet": statistics.median(quiet),
        "median_step_s_during_save": statistics.median(during) if during else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", required=True, help="a local directory for the local run dirs")
    parser.add_argument("--remote", required=True, help="a gs://BUCKET/PREFIX for the remote run dirs")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()
    trainer = Trainer(args.preset, args.batch_size, args.seq_len)
    result: dict[str, Any] = {
        "preset": args.preset,
        "state_mib": state_bytes(trainer.host_state()) / 2**20,
        "rounds": [],
    }
    for round_index in range(args.rounds):
        targets = [("local", args.local), ("remote", args.remote)]
        for name, root in targets if round_index % 2 == 0 else targets[::-1]:
            run_dir = f"{root.rstrip('/')}/round{round_index}"
            checkpoints = Checkpoints(to_path(run_dir), keep=3)
            measured = {"target": name, "round": round_index, **save_times(checkpoints, 1, trainer)}
            measured.update(overlap(checkpoints, 2, trainer))
            checkpoints.close()
            measured["restore_s"] = restore_time(run_dir, trainer)
            result["rounds"].append(measured)
            print(json.dumps(measured), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
