"""`bert-flax finetune classify|qa` end to end on data built from the corpus (tests/finetune_data.py):
a tiny BERT with bert-base-uncased's vocabulary learns each task clearly beyond its baselines, the run
dir holds what users read, resume is exact, and bad task data is one line with exit code 2."""

from __future__ import annotations

import collections
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TIMING_KEYS, run_cli_on_one_device
from finetune_data import pair_questions, topic_rows, write_squad, write_topic_csv
from transformers import FlaxBertForSequenceClassification

from bert_flax.cli import main
from bert_flax.config import load_config
from bert_flax.finetune.run import finetune
from bert_flax.run.metrics import read_metrics


def tiny(minilm_dir: str, train: Path, evaluation: Path, *more: str) -> list[str]:
    return [
        "model.init=",
        "model.preset=tiny",
        f"tokenizer.name={minilm_dir}",
        f"finetune.train_path={train}",
        f"finetune.eval_path={evaluation}",
        "data.max_seq_len=64",
        "train.batch_size=16",
        "eval.batch_size=16",
        "optim.learning_rate=1e-3",
        "optim.warmup_steps=10",
        *more,
    ]


@pytest.fixture(scope="module")
def topics(corpus_lines: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    rows = topic_rows(corpus_lines)
    root, cut = tmp_path_factory.mktemp("topics"), int(len(rows) * 0.8)
    return write_topic_csv(rows[:cut], root / "train.csv"), write_topic_csv(rows[cut:], root / "eval.csv")


@pytest.fixture(scope="module")
def questions(corpus_lines: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    articles = pair_questions(corpus_lines)
    root, cut = tmp_path_factory.mktemp("questions"), int(len(articles) * 0.8)
    return write_squad(articles[:cut], root / "train.json"), write_squad(articles[cut:], root / "eval.json")


def trace(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(run_dir)]


@pytest.mark.slow
def test_classify_learns_the_topics_and_keeps_the_best(minilm_dir: str, topics, tmp_path: Path) -> None:
    train, evaluation = topics
    labels = [row["label"] for row in csv.DictReader(evaluation.open())]
    majority = max(collections.Counter(labels).values()) / len(labels)
    config = load_config(None, tiny(minilm_dir, train, evaluation, "train.steps=60", "eval.every=20"))
    result = finetune(config, tmp_path / "run", show_progress=False)
    print(f"\nclassify: majority {majority:.3f}, after 60 steps {result.eval}")
    assert result.finished and majority <= 0.4
    assert result.eval["accuracy"] >= majority + 0.4 and result.eval["macro_f1"] >= 0.6, result.eval

    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "labels.json").read_text())["labels"] == ["death", "gods", "nature", "reason"]
    report = json.loads((run_dir / "eval_report.json").read_text())
    assert report["step"] == 60 and np.sum(report["confusion_matrix"]) == len(labels)
    best_eval = json.loads((run_dir / "best" / "eval.json").read_text())
    accuracies = [r["accuracy"] for r in read_metrics(run_dir, "eval")]
    assert best_eval["accuracy"] == max(accuracies)
    best = FlaxBertForSequenceClassification.from_pretrained(run_dir / "best")
    assert best.config.id2label == {0: "death", 1: "gods", 2: "nature", 3: "reason"}
    assert best.config.architectures == ["BertForSequenceClassification"]


def test_classify_resume_is_exact(minilm_dir: str, topics, tmp_path: Path) -> None:
    config = load_config(None, tiny(minilm_dir, *topics, "train.steps=4", "eval.every=2", "checkpoint.every=2"))
    finetune(config, tmp_path / "whole", show_progress=False)
    stopped = finetune(config, tmp_path / "resumed", stop_at=2, show_progress=False)
    assert not stopped.finished and stopped.step == 2
    assert finetune(config, tmp_path / "resumed", show_progress=False).finished
    assert trace(tmp_path / "resumed") == trace(tmp_path / "whole")


@pytest.mark.slow
def test_qa_finds_the_quoted_spans(minilm_dir: str, questions, tmp_path: Path) -> None:
    """MiniLM's pretrained encoder + a new QA head: 60 steps take F1 from ~10 to far above it
    (both runs in a one-device process: conftest.run_cli_on_one_device)."""
    more = [
        f"model.init={minilm_dir}",
        "data.max_seq_len=128",
        "finetune.doc_stride=32",
        "finetune.max_query_len=24",
        "optim.learning_rate=1e-4",
    ]

    def final_eval(name: str, *steps: str) -> dict[str, float]:
        run_dir = tmp_path / name
        overrides = tiny(minilm_dir, *questions, *more, *steps)
        run_cli_on_one_device("finetune", "qa", "--run-dir", str(run_dir), "--quiet", *overrides)
        return {k: v for k, v in read_metrics(run_dir, "eval")[-1].items() if k not in ("step", "split", *TIMING_KEYS)}

    untrained = final_eval("untrained", "train.steps=1", "optim.learning_rate=1e-12")
    trained = final_eval("trained", "train.steps=60", "eval.every=60")
    print(f"\nqa: untrained {untrained}, after 60 steps {trained}")
    assert trained["f1"] >= untrained["f1"] + 30, (untrained, trained)
    report = json.loads((tmp_path / "trained" / "eval_report.json").read_text())
    assert len(report["predictions"]) == report["total"]


def test_cli_finetune_and_bad_task_data(minilm_dir: str, topics, tmp_path: Path, capsys) -> None:
    train, evaluation = topics
    args = ["finetune", "classify", "--run-dir", str(tmp_path / "cli")]
    assert main([*args, *tiny(minilm_dir, train, evaluation, "train.steps=2", "eval.every=2")]) == 0
    assert "finished" in capsys.readouterr().out

    no_label = tmp_path / "no_label.csv"
    no_label.write_text("text,topic\nsome words here,a\n")
    code = main(["finetune", "classify", "--run-dir", str(tmp_path / "bad"), *tiny(minilm_dir, no_label, evaluation)])
    err = capsys.readouterr().err
    assert code == 2 and "no column 'label'" in err and "'topic'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()

    unseen = tmp_path / "unseen.csv"
    write_topic_csv([{"text": "Wisdom is a thing of the soul.", "label": "wisdom"}], unseen)
    more = ("train.steps=2", "eval.every=2")
    assert (
        main(["finetune", "classify", "--run-dir", str(tmp_path / "u"), *tiny(minilm_dir, train, unseen, *more)]) == 0
    )
    assert read_metrics(tmp_path / "u", "eval")[-1]["unseen_labels"] == 1
