"""`bert-flax finetune classify|qa`: the fine-tuning loop, on the pre-training machinery.

Shared with pre-training: the config and its run-dir guard, the optimizer and schedule, the
generic jitted data-parallel step (`Task`), Orbax checkpoints with exact resume, metrics.jsonl,
prefetching, stop signals and bad-input handling. Own here: the task data, the head model, the
eval metrics, and `best/`, the weights of the best eval so far (accuracy; QA: F1).

Run dir: config.yaml, tokenizer/, model_config.json (with the label maps), labels.json
(classify), metrics.jsonl, checkpoints/, eval_report.json (the last eval: per-class scores and
confusion matrix, or QA scores), best/ and final/ (save_pretrained directories).
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterator

import jax
import numpy as np

from bert_flax.config import Config
from bert_flax.data.pipeline import local_rows
from bert_flax.engine.checkpoint import Checkpoints, DataState
from bert_flax.engine.loop import RunResult, StepLoop, is_main_process, start_run
from bert_flax.engine.optim import learning_rate_schedule, make_optimizer
from bert_flax.engine.parallel import DataParallel, make_data_parallel
from bert_flax.engine.step import init_train_state
from bert_flax.finetune import data as task_data
from bert_flax.finetune.classify_metrics import classification_report
from bert_flax.finetune.heads import TaskModel, build_task_model
from bert_flax.finetune.qa_postprocess import best_answers
from bert_flax.finetune.squad_metrics import squad_scores
from bert_flax.finetune.tasks import classification_task, qa_task
from bert_flax.model.losses import cross_entropy
from bert_flax.run.layout import RunDir, create_run_dir, read_saved_eval, save_pretrained_dir
from bert_flax.storage import AnyPath, to_path, write_file

BEST_METRIC = {"classify": "accuracy", "qa": "f1"}


class _Evaluator:
    """Eval batches through the model, metrics on the host; the report goes to RUN_DIR/eval_report.json."""

    def __init__(self, config: Config, encoded: task_data.EncodedData, labels: Any) -> None:
        self.config, self.encoded, self.labels = config, encoded, labels
        self.batches = task_data.eval_batches(encoded.eval, config.eval.batch_size)
        self.num_rows = len(encoded.eval["input_ids"])

    def _outputs(self, parallel: DataParallel, state: Any) -> dict[str, np.ndarray]:
        parts = []
        for batch in self.batches:
            local = local_rows(batch, jax.process_index(), jax.process_count())
            parts.append(parallel.read_rows(parallel.eval_step(state, parallel.place_batch(local))))
        return {key: np.concatenate([part[key] for part in parts])[: self.num_rows] for key in parts[0]}

    def __call__(self, parallel: DataParallel, state: Any) -> tuple[dict[str, float], dict[str, Any]]:
        outputs = self._outputs(parallel, state)
        if self.config.finetune.task == "classify":
            label_ids_N = self.encoded.eval["labels"]
            report = classification_report(label_ids_N, outputs["logits"].argmax(axis=1), self.labels.names)
            scored_N = label_ids_N >= 0
            loss = (
                float(np.mean(cross_entropy(outputs["logits"][scored_N], label_ids_N[scored_N])))
                if scored_N.any()
                else math.nan
            )
            metrics = {"loss": loss, "accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
            return {**metrics, "unseen_labels": report["num_unseen_labels"]}, report
        answers = best_answers(
            self.encoded.eval_examples,
            self.encoded.eval_features,
            outputs["start_logits"],
            outputs["end_logits"],
            self.config.finetune,
        )
        scores = squad_scores(answers, self.encoded.eval_examples)
        return {key: float(value) for key, value in scores.items()}, {**scores, "predictions": answers}


def _best_so_far(run: RunDir, metric: str) -> float:
    saved = read_saved_eval(run.best)
    return float(saved[metric]) if saved is not None else -math.inf


def finetune(config: Config, run_dir: str | AnyPath, stop_at: int | None = None, show_progress: bool = True) -> RunResult:
    """Fine-tune (or resume) `config.finetune.task` in `run_dir`; like `pretrain`, every check comes first."""
    run_dir, task = to_path(run_dir), config.finetune.task
    resuming = start_run(config, run_dir, stop_at)
    if task == "classify":
        read = task_data.read_classification(config)
        labels = read.labels
        task_model = build_task_model(config, list(labels.names))
        encoded = task_data.encode_classification(read, task_model.tokenizer, config.data.max_seq_len)
        objective = classification_task(task_model.model)
    else:
        read, labels = task_data.read_qa(config), None
        task_model = build_task_model(config)
        encoded = task_data.encode_qa(read, task_model.tokenizer, config)
        objective = qa_task(task_model.model)
    task_data.batches_per_epoch(len(encoded.train["input_ids"]), config.train.batch_size)
    tx = make_optimizer(config.optim, config.train.steps)
    parallel = make_data_parallel(objective, tx, learning_rate_schedule(config.optim, config.train.steps), config)

    run = RunDir(run_dir)
    if is_main_process() and not resuming:
        create_run_dir(run_dir, config, task_model.tokenizer, task_model.config)
        if labels is not None:
            labels.save(run.labels)
    checkpoints = Checkpoints(run_dir, config.checkpoint.keep)
    initial = parallel.place_state(init_train_state(task_model.params, tx, config.train.seed))
    restored = checkpoints.restore_latest(parallel.host_state(initial))
    state, start = (initial, 0) if restored is None else (parallel.place_state(restored.state), restored.step)
    stop = stop_at if stop_at is not None else config.train.steps
    evaluator = _Evaluator(config, encoded, labels) if encoded.eval is not None else None
    loop = FinetuneLoop(
        config, run_dir, parallel, checkpoints, start, show_progress, task_model=task_model, evaluator=evaluator
    )

    def host_batches() -> Iterator[tuple[dict, DataState]]:
        """The batch at a step is a function of the step alone: the checkpoint needs no data state."""
        for step in range(start + 1, stop + 1):
            batch = task_data.train_batch(encoded.train, step, config.train.batch_size, config.train.seed)
            yield local_rows(batch, jax.process_index(), jax.process_count()), {}

    state, step, stopped_by = loop.run_all(state, start, stop, host_batches())
    finished = step >= config.train.steps and stopped_by is None
    if finished and is_main_process():
        params = jax.device_get(parallel.host_state(state).params)
        save_pretrained_dir(run.final, task_model.model, params, task_model.tokenizer, loop.last_eval or None)
    return RunResult(run_dir, step, finished, loop.last_train, loop.last_eval, stopped_by)


class FinetuneLoop(StepLoop):
    """Fine-tuning's metrics (loss, accuracy) and evals, which also keep best/ up to date."""

    def __init__(self, *args: Any, task_model: TaskModel, evaluator: _Evaluator | None) -> None:
        super().__init__(*args)
        self.task_model, self.evaluator, self.has_eval = task_model, evaluator, evaluator is not None
        self.metric_name = BEST_METRIC[self.config.finetune.task]
        self.layout = RunDir(self.run_dir)
        self.best = _best_so_far(self.layout, self.metric_name)

    def train_values(self, raw: dict[str, float]) -> dict[str, float]:
        count = max(raw["count"], 1.0)
        values = {"loss": raw["loss_sum"] / count, "grad_norm": raw["grad_norm"], "param_norm": raw["param_norm"]}
        if "correct" in raw:
            values["accuracy"] = raw["correct"] / count
        return values

    def eval_values(self, step: int, state: Any) -> dict[str, float]:
        values, report = self.evaluator(self.parallel, state)
        if is_main_process():
            write_file(self.layout.eval_report, json.dumps({"step": step, **report}, indent=2) + "\n")
        score = values[self.metric_name]
        if math.isfinite(score) and score > self.best:
            self.best = score
            if is_main_process():
                params = jax.device_get(self.parallel.host_state(state).params)
                save_pretrained_dir(
                    self.layout.best,
                    self.task_model.model,
                    params,
                    self.task_model.tokenizer,
                    {"step": step, **values},
                )
        return values
