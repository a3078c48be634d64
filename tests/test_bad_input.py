"""The bad-input catalogue: every case is a row of README.md's "Bad input" table and a test.

Each case builds one bad input under `tmp_path` and runs the CLI in-process. The contract:
exit code 2; stderr is exactly one line, `error: ...`, holding the case's fragment and matching
the README row's message (`…` there stands for paths and long lists); no traceback unless
`--debug`, which re-raises the UserError; and nothing under `tmp_path` (inputs, run dir, export
destination, working directory) is created, changed or removed.

Log records (transformers, our own warnings) go to stderr in a real run; pytest captures them
apart from capsys, so they are checked separately: no WARNING or worse may be logged either —
a bad input gets its one line, nothing else.

The data cache (`data.cache_dir`) is the session's `smoke_cache`, outside the snapshot: a valid
corpus may be tokenized and cached before a later check (e.g. the model's vocabulary) fails.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Callable

import pytest
from conftest import REPO_ROOT

from bert_flax.cli import main
from bert_flax.config import load_config
from bert_flax.errors import EXIT_BAD_INPUT, UserError
from bert_flax.run.layout import create_run_dir

SMOKE = str(REPO_ROOT / "configs" / "smoke.yaml")
README = REPO_ROOT / "README.md"
SECTION = "## Bad input"


@dataclasses.dataclass
class Env:
    """What a case builds its input from: a fresh `tmp` directory and the session fixtures."""

    tmp: Path
    corpus: Path
    cache: Path
    request: pytest.FixtureRequest

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)

    def write(self, name: str, content: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def pretrain(
        self, *overrides: str, corpus: Path | None = None, config: str = SMOKE, run_dir: Path | str | None = None
    ):
        """`pretrain` on the smoke config, the test corpus and the shared cache, into tmp/run."""
        return [
            "pretrain",
            "--config",
            config,
            "--run-dir",
            str(run_dir or self.tmp / "run"),
            f"data.path={corpus or self.corpus}",
            f"data.cache_dir={self.cache}",
            *overrides,
        ]


@dataclasses.dataclass(frozen=True)
class Case:
    id: str  # the pytest id
    what: str  # the README row's first cell
    fragment: str  # must be in the message (and in the README row)
    argv: Callable[[Env], list[str]]  # builds the bad input under env.tmp, returns the CLI arguments


def _chmod_read_only(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o555)
    if os.access(path, os.W_OK):
        pytest.skip("this user writes through permission bits (root with CAP_DAC_OVERRIDE)")
    return path


def _gpt2_dir(env: Env) -> Path:
    from transformers import FlaxGPT2LMHeadModel, GPT2Config

    path = env.tmp / "gpt2"
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=64)
    FlaxGPT2LMHeadModel(config).save_pretrained(path)
    return path


def _other_run(env: Env) -> Path:
    run_dir = env.tmp / "run"
    create_run_dir(
        run_dir, load_config(SMOKE, [f"data.path={env.corpus}", f"data.cache_dir={env.cache}", "train.steps=9"])
    )
    return run_dir


def _prepared(env: Env, corpus: Path, *overrides: str) -> Path:
    """`corpus` prepared into tmp/prepared as the smoke config (plus `overrides`) would prepare it."""
    from bert_flax.data.prepare import ensure_prepared
    from bert_flax.data.tokenizer import load_tokenizer, tokenizer_label

    config = load_config(SMOKE, [f"data.path={corpus}", f"data.cache_dir={env.cache}", f"data.prepared_dir={env.tmp / 'prepared'}", *overrides])
    tokenizer = load_tokenizer(config.tokenizer, config.data, env.cache)
    return ensure_prepared(config.data, tokenizer.backend_tokenizer, tokenizer_label(config.tokenizer), progress=False).directory


def _truncated(env: Env) -> Path:
    directory = _prepared(env, env.corpus)
    tokens = directory / "tokens-00000.npy"
    os.truncate(tokens, tokens.stat().st_size - 1000)
    return directory


def _changed_corpus(env: Env) -> Path:
    corpus = env.write("corpus.txt", env.corpus.read_bytes())
    _prepared(env, corpus)
    with corpus.open("a", encoding="utf-8") as f:
        f.write("A paragraph added after preparing. It changes the size.\n")
    return corpus


ENORMOUS_LINE = "The soul becomes dyed with the colour of its thoughts. " * 20000  # 1.1 MB, no line break

CASES = [
    # Corpus
    Case("corpus-missing", "corpus file missing", "does not exist", lambda e: e.pretrain(corpus=e.tmp / "missing.txt")),
    Case(
        "corpus-directory",
        "corpus path is a directory",
        "is a directory",
        lambda e: e.pretrain(corpus=(e.tmp / "texts").mkdir() or e.tmp / "texts"),
    ),
    Case(
        "corpus-empty",
        "corpus file empty",
        "is empty or holds only whitespace",
        lambda e: e.pretrain(corpus=e.write("empty.txt", b"")),
    ),
    Case(
        "corpus-whitespace",
        "corpus file whitespace only",
        "is empty or holds only whitespace",
        lambda e: e.pretrain(corpus=e.write("blank.txt", " \n\t\n\r\n  \n")),
    ),
    Case(
        "corpus-binary",
        "corpus file binary",
        "looks binary",
        lambda e: e.pretrain(corpus=e.write("weights.bin", b"\x00\x01\x02binary\x00" * 50)),
    ),
    Case(
        "corpus-not-utf8",
        "corpus file not UTF-8",
        "is not valid UTF-8",
        lambda e: e.pretrain(corpus=e.write("latin1.txt", b"Caf\xe9 society.\n")),
    ),
    Case(
        "corpus-glob",
        "corpus glob matching nothing",
        "matches no file",
        lambda e: e.pretrain(corpus=e.tmp / "*.nothing"),
    ),
    Case(
        "corpus-one-document",
        "corpus of one document, NSP on",
        "has 1 document(s)",
        lambda e: e.pretrain(corpus=e.write("one.txt", "One sentence here. Another one there. And a third!\n")),
    ),
    Case(
        "corpus-enormous-line",
        "corpus of one enormous line",
        "has 1 document(s)",
        lambda e: e.pretrain(corpus=e.write("huge.txt", ENORMOUS_LINE)),
    ),
    Case(
        "corpus-not-utf8-deep",
        "corpus file not UTF-8 deep in the file",
        "byte offset 200017",
        lambda e: e.pretrain(corpus=e.write("late.txt", b"Plain text. All fine here.\n" * 7408 + b"x\xff\n")),
    ),
    # Prepared datasets
    Case(
        "prepared-truncated",
        "prepared dataset truncated",
        "is damaged: tokens-00000.npy has",
        lambda e: e.pretrain(f"data.prepared_dir={_truncated(e)}"),
    ),
    Case(
        "prepared-other-tokenizer",
        "prepared with another tokenizer",
        "was made with tokenizer",
        lambda e: e.pretrain(
            f"data.prepared_dir={_prepared(e, e.corpus, 'tokenizer.train=false', 'tokenizer.name=' + e.fixture('minilm_dir'))}"
        ),
    ),
    Case(
        "prepared-source-changed",
        "corpus changed since it was prepared",
        "changed since it was prepared",
        lambda e: e.pretrain(f"data.prepared_dir={e.tmp / 'prepared'}", corpus=_changed_corpus(e)),
    ),
    # Config
    Case(
        "config-missing",
        "config file missing",
        "does not exist; pass an existing YAML file",
        lambda e: e.pretrain(config=str(e.tmp / "nope.yaml")),
    ),
    Case(
        "config-not-yaml",
        "config file not YAML",
        "is not valid YAML",
        lambda e: e.pretrain(config=str(e.write("bad.yaml", "train: [steps: 4\n"))),
    ),
    Case("config-unknown-key", "unknown key", "unknown key 'train.stepz'", lambda e: e.pretrain("train.stepz=4")),
    Case("config-wrong-type", "wrong type", "train.steps must be an integer", lambda e: e.pretrain("train.steps=many")),
    Case(
        "config-out-of-range",
        "out-of-range value",
        "masking.mask_prob must be in (0, 1]",
        lambda e: e.pretrain("masking.mask_prob=1.5"),
    ),
    Case(
        "config-replace-probs",
        "mask probabilities summing above 1",
        "must be at most 1",
        lambda e: e.pretrain("masking.mask_replace_prob=0.9", "masking.random_replace_prob=0.2"),
    ),
    Case(
        "config-batch-devices",
        "batch not divisible by the devices",
        "is not divisible by",
        lambda e: e.pretrain(f"train.batch_size={_devices() + 1}"),
    ),
    Case(
        "config-seq-len",
        "max_seq_len beyond the model",
        "but the model has only 512 positions",
        lambda e: e.pretrain("data.max_seq_len=1024"),
    ),
    Case(
        "packing-hf",
        "packing with model.impl=hf",
        "data.packing needs model.impl=fast",
        lambda e: e.pretrain("data.packing=true", "model.impl=hf"),
    ),
    Case(
        "packing-per-row",
        "examples per row below 1",
        "data.max_examples_per_row must be at least 1",
        lambda e: e.pretrain("data.packing=true", "model.impl=fast", "data.max_examples_per_row=0"),
    ),
    Case(
        "packing-row-too-short",
        "packed rows too short",
        "a packed row must hold two examples",
        lambda e: e.pretrain("data.packing=true", "model.impl=fast", "data.max_seq_len=9"),
    ),
    Case(
        "packing-predictions",
        "prediction slots below a packed row's",
        "can hold 20 predictions",
        lambda e: e.pretrain("data.packing=true", "model.impl=fast", "masking.max_predictions=12"),
    ),
    Case(
        "cache-dir-file",
        "data cache dir is a file",
        "exists and is not a directory",
        lambda e: e.pretrain(f"data.cache_dir={e.write('cache.txt', 'x')}"),
    ),
    # Models
    Case(
        "model-unknown-offline",
        "model name unknown (offline)",
        "not a local directory, not in the HF cache, and the hub is unreachable",
        lambda e: e.pretrain("model.init=no-such-org/no-such-bert"),
    ),
    Case(
        "model-vocab",
        "model vocabulary ≠ tokenizer's",
        "tokens but model.init=",
        lambda e: e.pretrain(f"model.init={e.fixture('minilm_dir')}"),
    ),
    Case("model-not-bert", "non-BERT checkpoint", "not BERT", lambda e: e.pretrain(f"model.init={_gpt2_dir(e)}")),
    Case(
        "model-no-config",
        "model directory without config.json",
        "no config.json",
        lambda e: e.pretrain(f"model.init={(e.tmp / 'empty_model').mkdir() or e.tmp / 'empty_model'}"),
    ),
    # Run directories
    Case(
        "run-dir-other-config",
        "run dir of another config",
        "holds another run's config",
        lambda e: _other_run(e) and e.pretrain(),
    ),
    Case(
        "run-dir-not-a-run",
        "run dir not a bert-flax run",
        "is not a bert-flax run",
        lambda e: e.write("run/notes.txt", "mine") and e.pretrain(),
    ),
    Case(
        "run-dir-under-a-file",
        "run dir inside a file",
        "exists and is not a directory",
        lambda e: e.pretrain(run_dir=e.write("file.txt", "x") / "run"),
    ),
    Case(
        "run-dir-not-writable",
        "run dir not writable",
        "is not writable",
        lambda e: e.pretrain(run_dir=_chmod_read_only(e.tmp / "locked") / "run"),
    ),
    Case(
        "run-dir-s3",
        "run dir on S3",
        "s3:// is not supported",
        lambda e: e.pretrain(run_dir="s3://my-bucket/run"),
    ),
    Case(
        "run-dir-no-bucket",
        "run dir in a bucket that does not exist",
        "does not exist; create it or pass another --run-dir",
        lambda e: e.fixture("gcs_server") and e.pretrain(run_dir="gs://no-such-bucket-here/run"),
    ),
    # Export
    Case(
        "export-exists",
        "export destination exists, no --force",
        "already exists; pass --force",
        lambda e: ["export", e.fixture("minilm_dir"), "--out", str(e.write("out/mine.txt", "keep").parent)],
    ),
    Case(
        "export-source-missing",
        "export source missing",
        "it does not exist; pass a model directory",
        lambda e: ["export", str(e.tmp / "no_such_model"), "--out", str(e.tmp / "out")],
    ),
    # Eval and report
    Case(
        "eval-no-eval-split",
        "eval without held-out documents",
        "there is no eval split (data.eval_fraction=0)",
        lambda e: ["eval", "--model", e.fixture("minilm_dir"), "--config", SMOKE, "data.eval_fraction=0"],
    ),
    Case(
        "report-not-a-run",
        "report of a directory that is not a run",
        "is not a bert-flax run (no config.yaml)",
        lambda e: ["report", str(e.write("notes/notes.txt", "mine").parent)],
    ),
    Case(
        "report-no-metrics",
        "report of a run without metrics yet",
        "nothing to report",
        lambda e: ["report", str(create_run_dir(e.tmp / "run", load_config(SMOKE)) or e.tmp / "run")],
    ),
    # Benchmarks (refused before any process starts)
    Case("suite-unknown", "unknown benchmark suite", "--suite must be one of", lambda e: ["bench", "--suite", "nope"]),
    Case(
        "suite-row-invalid",
        "an override that breaks a suite row",
        "suite smoke, row hf at tiny, 64 × 8: config: model.remat dots needs model.impl=fast",
        lambda e: ["bench", "--suite", "smoke", "model.impl=fast", "model.remat=dots"],
    ),
]


def _devices() -> int:
    import jax

    return jax.device_count()


def _snapshot(root: Path) -> dict[str, tuple]:
    """path → (kind, mode, mtime, sha256) of everything under `root`, `root` included."""
    entries = {}
    for path in [root, *sorted(root.rglob("*"))]:
        stat = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        entries[str(path.relative_to(root))] = (
            "dir" if path.is_dir() else "file",
            stat.st_mode,
            stat.st_mtime_ns,
            digest,
        )
    return entries


@pytest.fixture
def env(tmp_path: Path, corpus_path: Path, smoke_cache: Path, request: pytest.FixtureRequest, monkeypatch) -> Env:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # a stray relative write (runs/, exported/) would show in the snapshot
    yield Env(work, corpus_path, smoke_cache, request)
    for path in [work, *work.rglob("*")]:  # let pytest clean up read-only directories
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def _readme_rows() -> dict[str, tuple[str, str]]:
    """README's Bad input table: first cell → (example, message), backticks stripped."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| bad input") or line.startswith("|---"):
            continue
        cells = [cell.strip().strip("`") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == 3, line
        rows[cells[0]] = (cells[1], cells[2].replace("\\|", "|"))
    return rows


def _matches_readme(message: str, shown: str) -> bool:
    """`shown` (README) is `message` with some parts replaced by `…`."""
    pattern = ".*?".join(re.escape(part) for part in shown.split("…"))
    return re.fullmatch(pattern, message, flags=re.DOTALL) is not None


def _skip_if_unsupported(case: Case) -> None:
    if case.id == "config-batch-devices" and _devices() == 1:
        pytest.skip("every batch divides by 1 device (run with XLA_FLAGS=--xla_force_host_platform_device_count=8)")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, env: Env, capsys, caplog) -> None:
    _skip_if_unsupported(case)
    argv = case.argv(env)
    capsys.readouterr()
    before = _snapshot(env.tmp)
    with caplog.at_level(logging.WARNING):
        code = main(argv)
    out, err = capsys.readouterr()
    assert code == EXIT_BAD_INPUT, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    message = lines[0].removeprefix("error: ")
    assert case.fragment in message
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert _snapshot(env.tmp) == before, "a bad input wrote, changed or removed files"
    shown = _readme_rows()[case.what][1].removeprefix("error: ")
    assert _matches_readme(message, shown), f"README shows {shown!r} for {case.what!r}, the CLI says {message!r}"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_debug_raises(case: Case, env: Env) -> None:
    _skip_if_unsupported(case)
    argv = case.argv(env)
    before = _snapshot(env.tmp)
    with pytest.raises(UserError) as info:
        main(["--debug", *argv])
    assert case.fragment in str(info.value)
    assert _snapshot(env.tmp) == before


def test_readme_table_is_the_catalogue() -> None:
    rows = _readme_rows()
    assert list(rows) == [case.what for case in CASES], "README's Bad input rows and CASES differ (order included)"
    for case in CASES:
        assert case.fragment in rows[case.what][1], f"README's message for {case.what!r} lacks {case.fragment!r}"
