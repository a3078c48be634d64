"""`bert-flax pretrain` on bad input: one line on stderr, exit code 2, no run directory touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO_ROOT

from bert_flax.cli import main
from bert_flax.config import load_config
from bert_flax.run.layout import create_run_dir

SMOKE = str(REPO_ROOT / "configs" / "smoke.yaml")


@pytest.fixture
def run_pretrain(corpus_path: Path, tmp_path: Path, capsys, monkeypatch):
    """Run the CLI on the smoke config with extra overrides; return (exit code, stderr, run dir)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run_dir = tmp_path / "run"

    def run(*overrides: str, config: str = SMOKE) -> tuple[int, str, Path]:
        code = main(
            [
                "pretrain",
                "--config",
                config,
                "--run-dir",
                str(run_dir),
                f"data.path={corpus_path}",
                f"data.cache_dir={tmp_path / 'cache'}",
                *overrides,
            ]
        )
        return code, capsys.readouterr().err, run_dir

    return run


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_batch_not_divisible_by_the_devices(run_pretrain) -> None:
    code, err, run_dir = run_pretrain("train.batch_size=12")
    assert_one_line_error(code, err, "train.batch_size=12", "8 devices", "multiple of 8")
    assert not run_dir.exists()


def test_eval_batch_not_divisible_by_the_devices(run_pretrain) -> None:
    code, err, run_dir = run_pretrain("eval.batch_size=4")
    assert_one_line_error(code, err, "eval.batch_size=4", "multiple of 8")
    assert not run_dir.exists()


def test_unknown_preset(run_pretrain) -> None:
    code, err, run_dir = run_pretrain("model.preset=huge")
    assert_one_line_error(code, err, "model.preset", "tiny, mini, small, medium, base, large", "huge")
    assert not run_dir.exists()


def test_model_and_tokenizer_vocabularies_disagree(run_pretrain, minilm_dir: str) -> None:
    code, err, run_dir = run_pretrain(f"model.init={minilm_dir}")  # smoke trains a 1000-token vocabulary
    assert_one_line_error(code, err, "tokenizer has", "30522", "tokenizer.name")
    assert not run_dir.exists()


def test_model_that_cannot_be_loaded_offline(run_pretrain) -> None:
    code, err, run_dir = run_pretrain("model.init=no-such-org/no-such-bert")
    assert_one_line_error(code, err, "no-such-org/no-such-bert", "meditations_scratch.yaml")
    assert not run_dir.exists()


def test_the_seed_config_offline_names_the_offline_config(run_pretrain) -> None:
    code, err, run_dir = run_pretrain(config=str(REPO_ROOT / "configs" / "meditations.yaml"))
    assert_one_line_error(code, err, "bert-base-uncased", "meditations_scratch.yaml")
    assert not run_dir.exists()


def test_run_dir_of_another_config(run_pretrain, corpus_path: Path, tmp_path: Path) -> None:
    other = load_config(SMOKE, [f"data.path={corpus_path}", "train.steps=9"])
    create_run_dir(tmp_path / "run", other)
    before = (tmp_path / "run" / "config.yaml").read_text()
    code, err, run_dir = run_pretrain()
    assert_one_line_error(code, err, "another run's config", "train.steps: 9 → 4", "--run-dir")
    assert (run_dir / "config.yaml").read_text() == before
    assert [p.name for p in run_dir.iterdir()] == ["config.yaml"]


def test_stop_at_out_of_range(run_pretrain) -> None:
    code, err, run_dir = run_pretrain("--stop-at", "9")
    assert_one_line_error(code, err, "--stop-at", "train.steps=4")
    assert not run_dir.exists()


def test_overrides_may_sit_between_options(corpus_path: Path, tmp_path: Path, capsys) -> None:
    argv = [
        "pretrain",
        "train.batch_size=12",
        "--config",
        SMOKE,
        f"data.path={corpus_path}",
        "--run-dir",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    assert "train.batch_size=12" in capsys.readouterr().err  # the override was applied, not rejected
