"""End to end on the smoke config: run dir, exact resume, refusals, damaged checkpoints, divergence."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import REPO_ROOT, smoke_config
from transformers import BertTokenizerFast, FlaxBertForPreTraining

from bert_flax.cli import main
from bert_flax.engine.loop import TrainingDiverged
from bert_flax.errors import UserError
from bert_flax.pretrain import pretrain
from bert_flax.run.metrics import read_metrics

METRIC_KEYS = {"step", "split", "loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy", "elapsed_seconds"}


@pytest.fixture(scope="module")
def cache_dir(smoke_cache: Path) -> Path:
    return smoke_cache


def smoke_overrides(corpus_path: Path, cache_dir: Path, *more: str) -> list[str]:
    return [f"data.path={corpus_path}", f"data.cache_dir={cache_dir}", *more]


def trace(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["split"], r["loss"], r.get("grad_norm")) for r in read_metrics(run_dir)]


def tree_digest(path: Path) -> dict[str, str]:
    """Every file under `path` with the sha256 of its bytes."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def full_run(smoke_run: Path) -> Path:
    """configs/smoke.yaml run for its 4 steps, uninterrupted."""
    return smoke_run


def test_run_dir_layout_and_metrics(full_run: Path) -> None:
    assert {p.name for p in full_run.iterdir()} >= {
        "config.yaml",
        "metrics.jsonl",
        "checkpoints",
        "tokenizer",
        "model_config.json",
        "final",
    }
    records = read_metrics(full_run)
    train = [r for r in records if r["split"] == "train"]
    evals = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert [r["step"] for r in evals] == [2, 4]  # eval.every=2 and the end
    for record in train:
        assert set(record) >= METRIC_KEYS | {"learning_rate", "tokens_per_second", "grad_norm"}
        assert record["loss"] == pytest.approx(record["mlm_loss"] + record["nsp_loss"])
        assert record["examples_per_step"] == 8  # one example per row
        assert 8 * 5 <= record["real_tokens_per_step"] < 8 * 64  # B × L counts padding too
        ratio = record["real_tokens_per_step"] / (8 * 64)
        assert record["real_tokens_per_second"] == pytest.approx(ratio * record["tokens_per_second"], rel=1e-6)
    assert set(evals[-1]) >= METRIC_KEYS | {"perplexity"}
    assert evals[-1]["perplexity"] == pytest.approx(np.exp(evals[-1]["mlm_loss"]))
    assert sorted(int(p.name) for p in (full_run / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]


def test_final_loads_with_from_pretrained(full_run: Path) -> None:
    model = FlaxBertForPreTraining.from_pretrained(full_run / "final")
    tokenizer = BertTokenizerFast.from_pretrained(full_run / "final")
    assert model.config.vocab_size == len(tokenizer.get_vocab())
    inputs = tokenizer(["The soul is dyed by its thoughts."], return_tensors="np")
    outputs = model(**inputs)
    assert outputs.prediction_logits.shape[-1] == model.config.vocab_size
    assert np.all(np.isfinite(outputs.seq_relationship_logits))


def test_resume_gives_the_uninterrupted_trace_bit_for_bit(
    full_run: Path, corpus_path: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """train 4 == train 2, stop, resume, train 2 (train and eval metrics, exactly)."""
    config, run_dir = smoke_config(corpus_path, cache_dir), tmp_path / "resumed"
    stopped = pretrain(config, run_dir, stop_at=2, show_progress=False)
    assert (stopped.step, stopped.finished) == (2, False)
    assert not (run_dir / "final").exists()
    resumed = pretrain(config, run_dir, show_progress=False)
    assert resumed.finished
    assert trace(run_dir) == trace(full_run)
    final_a = FlaxBertForPreTraining.from_pretrained(full_run / "final").params
    final_b = FlaxBertForPreTraining.from_pretrained(run_dir / "final").params
    jax.tree.map(np.testing.assert_array_equal, final_a, final_b)


def test_packed_run_resumes_from_its_saved_data_state(corpus_path: Path, cache_dir: Path, tmp_path: Path) -> None:
    """data.packing: the checkpoint keeps the row stream's position (its group), the resumed run continues from
    it with the trace of the uninterrupted run; a step holds more examples than rows."""
    config = smoke_config(corpus_path, cache_dir, "data.packing=true", "model.impl=fast", "data.max_seq_len=128")
    assert pretrain(config, tmp_path / "whole", show_progress=False).finished
    assert pretrain(config, tmp_path / "resumed", stop_at=2, show_progress=False).step == 2
    saved = json.loads((tmp_path / "resumed" / "checkpoints" / "2" / "data" / "metadata").read_text())  # Orbax's JSON item
    assert set(saved) == {"step", "epoch", "offset", "group", "group_first_row"} and saved["step"] == 2
    assert pretrain(config, tmp_path / "resumed", show_progress=False).finished
    assert trace(tmp_path / "resumed") == trace(tmp_path / "whole")
    train = read_metrics(tmp_path / "whole", "train")
    assert all(r["examples_per_step"] > 8 and r["real_tokens_per_step"] > 0.9 * 8 * 128 for r in train)


def test_resume_drops_metrics_logged_after_the_checkpoint(corpus_path: Path, cache_dir: Path, tmp_path: Path) -> None:
    """A crash after step 3 (checkpoint at 2) leaves step 3 in metrics.jsonl; the resumed run logs it once."""
    config, run_dir = smoke_config(corpus_path, cache_dir), tmp_path / "crashed"
    pretrain(config, run_dir, stop_at=3, show_progress=False)
    shutil.rmtree(run_dir / "checkpoints" / "3")  # as if killed before step 3's checkpoint
    pretrain(config, run_dir, show_progress=False)
    steps = [(r["step"], r["split"]) for r in read_metrics(run_dir)]
    assert steps == [(1, "train"), (2, "train"), (2, "eval"), (3, "train"), (4, "train"), (4, "eval")]


def test_another_config_is_refused_and_nothing_changes(full_run: Path, corpus_path: Path, cache_dir: Path) -> None:
    before = tree_digest(full_run)
    with pytest.raises(UserError, match=r"another run's config \(train.steps: 4 → 6\)"):
        pretrain(smoke_config(corpus_path, cache_dir, "train.steps=6"), full_run, show_progress=False)
    assert tree_digest(full_run) == before


def test_a_directory_that_is_not_a_run_is_refused(corpus_path: Path, cache_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a bert-flax run"):
        pretrain(smoke_config(corpus_path, cache_dir), tmp_path, show_progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def _damage(checkpoint: Path) -> None:
    """Truncate every array file of a checkpoint's state."""
    for path in (checkpoint / "state").rglob("*"):
        if path.is_file() and "ocdbt" in str(path.relative_to(checkpoint)):
            path.write_bytes(b"")


def test_unreadable_checkpoint_falls_back_to_the_previous(
    corpus_path: Path, cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, run_dir = smoke_config(corpus_path, cache_dir, "checkpoint.every=1"), tmp_path / "damaged"
    pretrain(config, run_dir, stop_at=3, show_progress=False)
    _damage(run_dir / "checkpoints" / "3")
    with caplog.at_level(logging.WARNING, logger="bert_flax.engine.checkpoint"):
        result = pretrain(config, run_dir, show_progress=False)
    assert result.finished
    assert any("step 3 is unreadable" in r.getMessage() for r in caplog.records)
    assert (run_dir / "unreadable_checkpoints" / "3").is_dir()
    assert [r["step"] for r in read_metrics(run_dir, "train")] == [1, 2, 3, 4]  # step 3 was trained again


def test_no_readable_checkpoint_is_an_error(corpus_path: Path, cache_dir: Path, tmp_path: Path) -> None:
    config, run_dir = smoke_config(corpus_path, cache_dir), tmp_path / "all_damaged"
    pretrain(config, run_dir, stop_at=2, show_progress=False)
    _damage(run_dir / "checkpoints" / "2")
    with pytest.raises(UserError, match="no readable checkpoint"):
        pretrain(config, run_dir, show_progress=False)


def test_divergence_stops_with_the_step_and_keeps_the_good_checkpoint(
    corpus_path: Path, cache_dir: Path, tmp_path: Path
) -> None:
    # Step 1 has learning rate 0 (warmup); step 2's update at 1e38 overflows the parameters.
    config = smoke_config(corpus_path, cache_dir, "optim.learning_rate=1e38", "optim.clip_norm=0", "checkpoint.every=1")
    run_dir = tmp_path / "diverged"
    with pytest.raises(TrainingDiverged, match=r"at step 2; the last good checkpoint is step 1"):
        pretrain(config, run_dir, show_progress=False)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]


def test_cli_pretrain_runs_and_reports(corpus_path: Path, cache_dir: Path, tmp_path: Path, capsys) -> None:
    args = ["pretrain", "--config", str(REPO_ROOT / "configs" / "smoke.yaml"), "--run-dir", str(tmp_path / "cli")]
    assert main([*args, "--stop-at", "1", *smoke_overrides(corpus_path, cache_dir, "train.steps=2")]) == 0
    assert "stopped at step 1" in capsys.readouterr().out
    assert main([*args, *smoke_overrides(corpus_path, cache_dir, "train.steps=2")]) == 0
    out = capsys.readouterr()
    assert "finished" in out.out and "resuming" in out.err
    assert json.loads((tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()[-1])["split"] == "eval"


def test_log_every_reads_windows_with_the_per_step_means(full_run: Path, corpus_path: Path, cache_dir: Path, tmp_path):
    """log.every=3: train records at 3 and at the end (4) only, holding the window's numbers of the per-step run."""
    overrides = ("log.every=3", "checkpoint.every=4", "eval.every=4")  # the stop (4) closes the last window
    windowed = pretrain(smoke_config(corpus_path, cache_dir, *overrides), tmp_path / "windowed", show_progress=False)
    assert windowed.finished
    records = read_metrics(tmp_path / "windowed", "train")
    per_step = {r["step"]: r for r in read_metrics(full_run, "train")}
    assert [r["step"] for r in records] == [3, 4]
    first, last = records
    for key in ("nsp_loss", "nsp_accuracy", "grad_norm"):  # 8 NSP examples every step: plain means
        assert first[key] == pytest.approx(np.mean([per_step[s][key] for s in (1, 2, 3)]), rel=1e-5)
    for key in ("param_norm", "learning_rate"):  # the window's last step
        assert first[key] == pytest.approx(per_step[3][key], rel=1e-6)
    mlm = [per_step[s]["mlm_loss"] for s in (1, 2, 3)]  # weighted by each step's number of predictions
    assert min(mlm) <= first["mlm_loss"] <= max(mlm) and first["mlm_loss"] != pytest.approx(per_step[3]["mlm_loss"])
    for key in ("loss", "mlm_loss", "nsp_loss", "grad_norm", "param_norm"):
        assert last[key] == pytest.approx(per_step[4][key], rel=1e-5)
