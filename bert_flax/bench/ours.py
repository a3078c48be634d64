"""'ours': exactly the trainer's step (either `model.impl`), as `bert-flax bench` times it."""

from __future__ import annotations

import dataclasses
from typing import Any

from bert_flax.bench.timing import Batches, Mode, prepare_mode
from bert_flax.config import Config
from bert_flax.engine.optim import learning_rate_schedule, make_optimizer
from bert_flax.engine.parallel import DataParallel, make_data_parallel
from bert_flax.engine.step import init_train_state
from bert_flax.model.losses import normalize, pretraining_task
from bert_flax.model.pretraining import PretrainingModel


def trainer_mode(config: Config, pretrained: PretrainingModel, batches: Batches, prefetch: int) -> Mode:
    """The trainer's own objects and calls: make_data_parallel → init_train_state → place_state, then
    place_batch + train_step per step."""
    tx = make_optimizer(config.optim, config.train.steps)
    schedule = learning_rate_schedule(config.optim, config.train.steps)
    task = pretraining_task(pretrained.model, config.train.objectives, config.model)
    parallel: DataParallel = make_data_parallel(task, tx, schedule, config)
    state = parallel.place_state(init_train_state(pretrained.params, tx, config.train.seed))

    def loss(outputs: Any) -> float:
        return normalize(parallel.read_metrics(outputs), config.train.objectives)["loss"]

    compile_step = lambda batch: parallel.compile_train_step(state, batch)  # noqa: E731
    return prepare_mode(compile_step, parallel.train_step, state, parallel.place_batch, loss, batches, prefetch)


def other_impl_config(config: Config) -> Config:
    """`config` with the other `model.impl`; settings hf lacks (scan, dots remat) fall back to its nearest."""
    model = config.model
    if model.impl == "hf":
        other = dataclasses.replace(model, impl="fast")
    else:
        remat = "none" if model.remat == "none" else "full"
        other = dataclasses.replace(model, impl="hf", scan_layers=False, remat=remat)
    return dataclasses.replace(config, model=other)
