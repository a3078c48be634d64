"""`bert-flax eval` on a real tiny pre-training run: a run dir, one of its checkpoints and its final/
give back the eval events the trainer wrote to metrics.jsonl (same data, same params, same eval step),
the run dir is left exactly as it was, and bad input is one line with exit code 2."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from bert_flax.cli import main
from bert_flax.errors import EXIT_BAD_INPUT
from bert_flax.run.metrics import read_metrics

METRICS = ("loss", "mlm_loss", "mlm_accuracy", "perplexity", "nsp_loss", "nsp_accuracy")
# Same batches, same params, same jitted eval step: only float summation order may differ.
RTOL = 1e-5


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def tree_hashes(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def run_and_cache(smoke_run: Path, smoke_cache: Path) -> dict[str, str]:
    return {**tree_hashes(smoke_run), **{f"cache/{k}": v for k, v in tree_hashes(smoke_cache).items()}}


@pytest.fixture(scope="module")
def run_hashes(smoke_run: Path, smoke_cache: Path) -> dict[str, str]:
    """The smoke run's files and the data cache it filled, before this module evaluates anything."""
    return run_and_cache(smoke_run, smoke_cache)


@pytest.fixture(scope="module")
def smoke_args(corpus_path: Path, smoke_cache: Path) -> list[str]:
    """The config the smoke run was trained with, for sources that carry no config (final/)."""
    return [
        "--config",
        str(REPO_ROOT / "configs" / "smoke.yaml"),
        f"data.path={corpus_path}",
        f"data.cache_dir={smoke_cache}",
    ]


def parse_text(out: str) -> dict[str, float]:
    """`key  value` lines."""
    pairs = [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines()]
    assert all(len(pair) == 2 for pair in pairs), out
    return {key: float(value) for key, value in pairs}


@pytest.mark.parametrize("which", ["run", "checkpoint", "final"])
def test_eval_gives_the_trainers_eval_event(
    which: str, smoke_run: Path, smoke_cache: Path, run_hashes: dict[str, str], smoke_args: list[str]
) -> None:
    evals = {record["step"]: record for record in read_metrics(smoke_run, "eval")}
    first, last = min(evals), max(evals)
    assert first < last, "the smoke run must evaluate at two steps (eval.every < train.steps)"
    source, step, extra = {
        "run": (smoke_run, last, []),  # its newest checkpoint, and its own config.yaml
        "checkpoint": (smoke_run / "checkpoints" / str(first), first, []),
        "final": (smoke_run / "final", None, smoke_args),  # save_pretrained: no step, no config
    }[which]
    as_json = which != "checkpoint"  # the checkpoint case reads the `key  value` lines
    code, out, err = run_cli("eval", "--model", str(source), *(["--json"] if as_json else []), *extra)
    assert code == 0, err
    result = json.loads(out) if as_json else parse_text(out)
    assert set(result) == set(METRICS) | ({"step"} if step is not None else set()), result
    if step is not None:
        assert result["step"] == step
    expected = evals[step if step is not None else last]
    for key in METRICS:
        assert result[key] == pytest.approx(expected[key], rel=RTOL), (key, result, expected)
    # Not into the run dir, and not even into the data cache: the trainer cached these tokens already.
    assert run_and_cache(smoke_run, smoke_cache) == run_hashes, "eval must write nothing"


def tiny_model_dir(out: Path, tokenizer_dir: Path, head: str) -> Path:
    """A save_pretrained directory with the run's tokenizer and a small model without pre-training heads."""
    from transformers import BertConfig, BertTokenizerFast, FlaxBertForSequenceClassification, FlaxBertModel

    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_dir)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model_class = {"BertModel": FlaxBertModel, "classifier": FlaxBertForSequenceClassification}[head]
    model_class(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def other_tokenizer(out: Path) -> Path:
    from transformers import BertTokenizerFast

    out.mkdir()
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]) + "\n")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt")).save_pretrained(out)
    return out


BAD = {
    "missing source": (lambda run, tmp, cfg: ["--model", str(tmp / "no-such-run")], "does not exist"),
    "no eval split": (lambda run, tmp, cfg: ["--model", str(run), "data.eval_fraction=0"], "no eval split"),
    "no --model, no default run": (lambda run, tmp, cfg: [], "pass --model"),
    "a BertModel": (
        lambda run, tmp, cfg: ["--model", str(tiny_model_dir(tmp / "m", run / "tokenizer", "BertModel")), *cfg],
        "has no MLM/NSP heads (a BertModel",
    ),
    "a classifier": (
        lambda run, tmp, cfg: ["--model", str(tiny_model_dir(tmp / "m", run / "tokenizer", "classifier")), *cfg],
        "has a sequence-classification head (BertForSequenceClassification)",
    ),
    "another vocabulary": (
        lambda run, tmp, cfg: [
            "--model",
            str(run / "final"),
            *cfg,
            "tokenizer.train=false",
            f"tokenizer.name={other_tokenizer(tmp / 'tok')}",
        ],
        "is not the vocabulary of",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_writes_nothing(
    case: str,
    smoke_run: Path,
    smoke_cache: Path,
    run_hashes: dict[str, str],
    smoke_args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make, message = BAD[case]
    argv = make(smoke_run, tmp_path, smoke_args)
    monkeypatch.chdir(tmp_path)  # no runs/meditations here
    before = tree_hashes(tmp_path)
    code, out, err = run_cli("eval", *argv)
    assert code == EXIT_BAD_INPUT, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert out == ""
    assert tree_hashes(tmp_path) == before and run_and_cache(smoke_run, smoke_cache) == run_hashes
