"""`bert-flax report RUN_DIR` on a real tiny pre-training run: the table and `--json` hold what
metrics.jsonl holds (best eval computed here independently), the PNGs are real images with the
curves drawn in them, and bad input is one line with exit code 2 that writes nothing."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
from conftest import smoke_config
from matplotlib.image import imread

from bert_flax.cli import main
from bert_flax.errors import EXIT_BAD_INPUT
from bert_flax.formats import format_duration
from bert_flax.run.metrics import read_metrics

PLOTS = ("loss", "accuracy", "learning_rate")
TRAIN_BLUE, EVAL_ORANGE, LR_GREEN = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)  # matplotlib C0, C1, C2


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run_dir(corpus_path: Path, smoke_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 6-step smoke run with evals at 2, 4, 6 and checkpoints at 3, 6; reported once."""
    from bert_flax.pretrain import pretrain

    run_dir = tmp_path_factory.mktemp("report") / "run"
    config = smoke_config(corpus_path, smoke_cache, "train.steps=6", "eval.every=2", "checkpoint.every=3")
    assert pretrain(config, run_dir, show_progress=False).finished
    return run_dir


@pytest.fixture(scope="module")
def table(run_dir: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """`bert-flax report RUN_DIR`'s stdout: the run table (label -> value) and the metrics table
    (metric -> cells); columns are separated by two or more spaces."""
    code, out, err = run_cli("report", str(run_dir))
    assert code == 0, err
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 3 and blocks[2].startswith("wrote "), out
    split = [[re.split(r"\s{2,}", line.strip()) for line in block.splitlines()] for block in blocks[:2]]
    return {row[0]: row[1] for row in split[0]}, {row[0]: row[1:] for row in split[1]}


def expected_best(evals: list[dict], key: str) -> tuple[float, int]:
    """Lowest loss / perplexity, highest accuracy; the first step that reached it."""
    pick = min if key.endswith(("loss", "perplexity")) else max
    best = pick(evals, key=lambda event: event[key])
    return best[key], best["step"]


def test_the_table_holds_what_metrics_jsonl_holds(run_dir: Path, table) -> None:
    rows, metrics = table
    train, evals = read_metrics(run_dir, "train"), read_metrics(run_dir, "eval")
    assert [e["step"] for e in evals] == [2, 4, 6]
    assert rows["steps"] == f"{max(e['step'] for e in train)} / 6 (finished)"
    assert rows["wall time"] == format_duration(read_metrics(run_dir)[-1]["elapsed_seconds"])
    assert rows["median tokens/s"] == f"{statistics.median(e['tokens_per_second'] for e in train):,.0f}"
    assert rows["checkpoints"] == ", ".join(sorted((p.name for p in (run_dir / "checkpoints").iterdir()), key=int))
    assert (rows["task"], rows["objectives"], rows["final/"]) == ("pretrain", "mlm, nsp", "present")
    assert rows["max_seq_len"] == "64" and rows["global batch"].startswith("8 sequences")
    assert metrics["metric"] == ["train (step 6)", "eval (step 6)", "best eval", "best step"]
    for key in ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy"):
        value, step = expected_best(evals, key)
        assert metrics[key] == [f"{train[-1][key]:.4g}", f"{evals[-1][key]:.4g}", f"{value:.4g}", str(step)], key


def test_json_summary(run_dir: Path) -> None:
    code, out, err = run_cli("report", str(run_dir), "--json")
    assert code == 0 and len(out.splitlines()) == 1, err
    summary = json.loads(out)
    train, evals = read_metrics(run_dir, "train"), read_metrics(run_dir, "eval")
    assert summary["task"] == "pretrain" and summary["objectives"] == ["mlm", "nsp"]
    assert (summary["steps_done"], summary["steps_planned"], summary["global_batch"]) == (6, 6, 8)
    assert summary["final_train"]["loss"] == train[-1]["loss"] and summary["final_train"]["step"] == 6
    assert summary["final_eval"]["mlm_accuracy"] == evals[-1]["mlm_accuracy"]
    for key in ("loss", "mlm_accuracy", "nsp_accuracy"):
        value, step = expected_best(evals, key)
        assert summary["best_eval"][key] == {"value": value, "step": step}, key
    assert summary["checkpoints"] == [3, 6] and summary["final_present"] is True
    assert sorted(summary["plots"]) == sorted(PLOTS)
    assert all(Path(path).is_file() for path in summary["plots"].values())


def pixels_of(image: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.sum(np.all(np.abs(image[..., :3] * 255 - np.array(rgb)) < 8, axis=-1)))


def check_png(path: Path, *colors: tuple[int, int, int]) -> np.ndarray:
    """A real PNG of a sane size, not blank, with each colour drawn in the panels (above the legend)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = imread(path)
    height, width = image.shape[:2]
    assert 400 <= height <= 3000 and 600 <= width <= 4000, (path, image.shape)
    assert image[..., :3].std() > 0.05, f"{path} is (nearly) blank"
    panels = image[: int(0.85 * height)]  # the legend (which shows every colour) sits at the bottom
    for rgb in colors:
        assert pixels_of(panels, rgb) > 20, (path, rgb)
    return image


def test_plots_and_report_md(run_dir: Path, table) -> None:
    plots = run_dir / "plots"
    assert sorted(p.name for p in plots.iterdir()) == sorted(f"{name}.png" for name in PLOTS)  # no temp files left
    check_png(plots / "loss.png", TRAIN_BLUE, EVAL_ORANGE)
    check_png(plots / "accuracy.png", TRAIN_BLUE, EVAL_ORANGE)
    check_png(plots / "learning_rate.png", LR_GREEN)
    markdown = (run_dir / "report.md").read_text()
    assert all(f"(plots/{name}.png)" in markdown for name in PLOTS)
    loss = read_metrics(run_dir, "train")[-1]["loss"]
    assert f"| loss | {loss:.4g} |" in markdown


def test_one_eval_point_still_plots(run_dir: Path, tmp_path: Path) -> None:
    """A run cut after its first eval and one more step (and half a line): the lone eval point shows."""
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(run_dir / "config.yaml", cut)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    first_eval = next(i for i, line in enumerate(lines) if json.loads(line)["split"] == "eval")
    (cut / "metrics.jsonl").write_text("\n".join(lines[: first_eval + 2]) + "\n" + lines[first_eval + 2][:20])
    code, out, err = run_cli("report", str(cut), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["steps_done"] == 3 and summary["checkpoints"] == [] and summary["final_present"] is False
    assert summary["best_eval"]["loss"]["step"] == 2
    check_png(cut / "plots" / "loss.png", TRAIN_BLUE, EVAL_ORANGE)


def _not_a_run(tmp_path: Path, run_dir: Path) -> Path:
    (tmp_path / "notes.txt").write_text("not a run")
    return tmp_path


def _no_metrics(tmp_path: Path, run_dir: Path) -> Path:
    shutil.copy(run_dir / "config.yaml", tmp_path)
    return tmp_path


def _cut_metrics(tmp_path: Path, run_dir: Path) -> Path:
    shutil.copy(run_dir / "config.yaml", tmp_path)
    (tmp_path / "metrics.jsonl").write_text((run_dir / "metrics.jsonl").read_text()[:30])
    return tmp_path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp, run: tmp / "missing", "does not exist"),
        (_not_a_run, "is not a bert-flax run (no config.yaml)"),
        (_no_metrics, "nothing to report"),
        (_cut_metrics, "nothing to report"),
    ],
    ids=["missing", "not-a-run", "no-metrics", "cut-metrics"],
)
def test_bad_run_dirs_are_one_line_and_write_nothing(make, message: str, run_dir: Path, tmp_path: Path) -> None:
    target = make(tmp_path, run_dir)
    before = sorted(tmp_path.rglob("*"))
    code, out, err = run_cli("report", str(target))
    assert code == EXIT_BAD_INPUT and out == ""
    assert len(err.splitlines()) == 1 and message in err and str(target) in err, err
    assert sorted(tmp_path.rglob("*")) == before
