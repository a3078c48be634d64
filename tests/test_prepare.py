"""Tests for prepared datasets (bert_flax.data.prepared_files, .prepare and `bert-flax prepare`): the directory
holds what in-memory tokenization gives, is reused and rebuilt, and bad input or an interrupted
prepare is one clear error with nothing half published. No JAX here."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from transformers import BertTokenizerFast

from bert_flax.config import DataConfig, TokenizerConfig
from bert_flax.data import prepare as prepare_module
from bert_flax.data.documents import split_documents
from bert_flax.data.prepare import Prepared, ensure_prepared
from bert_flax.data.prepared_files import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PreparedWriter,
    open_prepared,
    read_manifest,
    token_dtype,
    tokenizer_fingerprint,
    verify,
)
from bert_flax.data.token_corpus import (
    ShardedTokens,
    TokenizedCorpus,
    encode_documents,
    plain_tokenizer,
    tokenize_documents,
)
from bert_flax.data.tokenizer import load_tokenizer
from bert_flax.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
WORDS = ["The", "soul", "naïve", "reason", "Γάμμα", "nature", "—", "“quoted”", "is", "of", "x", "café", "stoic", "dyed"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERT_FLAX_CACHE", str(tmp_path / "bert_flax_cache"))


@pytest.fixture(scope="module")
def minilm(minilm_dir: str) -> BertTokenizerFast:
    return load_tokenizer(TokenizerConfig(name=minilm_dir))


def _text(num_lines: int, seed: int = 0) -> str:
    """Lines of one to a few sentences, blank lines (some holding spaces, some CRLF) between some."""
    rng = random.Random(seed)
    lines = []
    for i in range(num_lines):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) + "." for _ in range(rng.randint(1, 4))]
        lines.append(f"Line {i}: " + " ".join(sentences) + rng.choice(["\n", "\n", "\r\n", "\n\n", "\n \t\n"]))
    return "".join(lines)


def _corpus(tmp_path: Path, num_lines: int = 120, name: str = "corpus.txt", seed: int = 0) -> Path:
    path = tmp_path / name
    path.write_bytes(_text(num_lines, seed).encode("utf-8"))
    return path


def _prepare(data: DataConfig, minilm: BertTokenizerFast, name: str, **kwargs: bool) -> Prepared:
    return ensure_prepared(data, minilm.backend_tokenizer, name, progress=False, **kwargs)


def _assert_same(a: TokenizedCorpus, b: TokenizedCorpus) -> None:
    np.testing.assert_array_equal(np.asarray(a.token_ids[0 : len(a.token_ids)]), np.asarray(b.token_ids[0 : len(b.token_ids)]))
    np.testing.assert_array_equal(a.sentence_starts, b.sentence_starts)
    np.testing.assert_array_equal(a.document_starts, b.document_starts)


def _siblings(directory: Path) -> list[str]:
    """Hidden temporary or set-aside siblings of `directory` (an interrupted or failed prepare's)."""
    parent = directory.parent
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{directory.name}.")) if parent.is_dir() else []


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


# ---------------------------------------------------------------------------------------------
# What a prepared directory holds


@pytest.mark.parametrize("mode", ["line", "blank_line"])
def test_prepared_equals_in_memory_tokenization(tmp_path: Path, minilm: BertTokenizerFast, minilm_dir: str, mode: str) -> None:
    path = _corpus(tmp_path)
    data = DataConfig(path=(str(path),), documents=mode, prepare_workers=1, cache_dir=str(tmp_path / "cache"))
    prepared = _prepare(data, minilm, minilm_dir)
    assert prepared.built and prepared.directory.parent == tmp_path / "cache" / "prepared"
    documents = split_documents(path.read_text(encoding="utf-8"), mode)
    expected = tokenize_documents(documents, minilm)
    _assert_same(prepared.tokenized, expected)
    assert prepared.tokenized.num_documents == len(documents)
    np.testing.assert_array_equal(prepared.tokenized.document_token_starts(), expected.document_token_starts())
    for d in range(0, len(documents), 11):  # a document's tokens are what the tokenizer gives its text
        first, last = prepared.tokenized.document_token_span(d)
        ids = prepared.tokenized.token_ids[first:last].tolist()
        assert ids == minilm(documents[d], add_special_tokens=False)["input_ids"]

    # Plain .npy files, memory-mapped by NumPy alone.
    directory = prepared.directory
    assert sorted(p.name for p in directory.iterdir()) == [
        "document_starts.npy", MANIFEST, "sentence_starts.npy", "tokens-00000.npy"
    ]
    tokens = np.load(directory / "tokens-00000.npy", mmap_mode="r")
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16  # 30,522 ids fit
    np.testing.assert_array_equal(tokens, expected.token_ids)
    np.testing.assert_array_equal(np.load(directory / "sentence_starts.npy", mmap_mode="r"), expected.sentence_starts)
    document_starts = np.load(directory / "document_starts.npy", mmap_mode="r")
    assert document_starts.dtype == np.int64
    np.testing.assert_array_equal(document_starts, expected.document_starts)

    # The manifest: format, sources, tokenizer, counts, files and their hashes.
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    assert manifest == prepared.manifest == read_manifest(directory)
    assert (manifest["format"], manifest["version"]) == (FORMAT, FORMAT_VERSION)
    stat = path.stat()
    assert manifest["sources"] == [{"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}]
    assert manifest["documents"] == mode
    assert manifest["tokenizer"] == minilm_dir
    assert manifest["tokenizer_sha256"] == tokenizer_fingerprint(minilm.backend_tokenizer)
    assert manifest["token_dtype"] == "uint16"
    assert manifest["counts"] == {
        "documents": len(documents), "sentences": len(expected.sentence_starts) - 1, "tokens": len(expected.token_ids)
    }
    (shard,) = manifest["files"]["tokens"]
    assert shard["file"] == "tokens-00000.npy" and shard["count"] == len(expected.token_ids)
    assert shard["sha256"] == hashlib.sha256(np.asarray(tokens).tobytes()).hexdigest()
    verify(directory)


def test_two_workers_and_small_chunks_give_the_same_directory(
    tmp_path: Path, minilm: BertTokenizerFast, minilm_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several chunks tokenized by two spawned worker processes come back in order: byte-equal files."""
    path = _corpus(tmp_path, num_lines=100)
    assert path.stat().st_size > 6 * 1024
    workers_used: list[int] = []
    encoded_chunks = prepare_module._encoded_chunks

    def spy(chunks, tokenizer, dtype, workers):  # type: ignore[no-untyped-def]
        workers_used.append(workers)
        yield from encoded_chunks(chunks, tokenizer, dtype, workers)

    monkeypatch.setattr(prepare_module, "_encoded_chunks", spy)
    directories = {}
    for workers in (1, 2):
        data = DataConfig(
            path=(str(path),), prepare_workers=workers, prepare_chunk_bytes=1024, prepared_dir=str(tmp_path / f"w{workers}")
        )
        directories[workers] = _prepare(data, minilm, minilm_dir).directory
    assert workers_used == [1, 2]  # the corpus is more than two chunks: real workers
    expected = tokenize_documents(split_documents(path.read_text(encoding="utf-8"), "line"), minilm)
    _assert_same(open_prepared(directories[2])[0], expected)
    assert _files(directories[1]) == _files(directories[2])


def test_token_shards_are_gathered_as_one_array(tmp_path: Path, minilm: BertTokenizerFast) -> None:
    plain = plain_tokenizer(minilm)
    chunks = [
        encode_documents(split_documents(_text(n, seed=n), "line"), plain, np.uint16) for n in (3, 1, 7, 2)
    ]
    directory = tmp_path / "sharded"
    directory.mkdir()
    writer = PreparedWriter(directory, np.dtype(np.uint16), shard_tokens=37)
    for chunk in chunks:
        writer.add(chunk)
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, **writer.finish()}
    (directory / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")

    tokens = np.concatenate([np.asarray(c.token_ids) for c in chunks])
    shards = manifest["files"]["tokens"]
    assert len(shards) == -(-len(tokens) // 37) > 3
    assert [s["file"] for s in shards] == [f"tokens-{i:05d}.npy" for i in range(len(shards))]
    assert all(s["count"] == 37 for s in shards[:-1]) and 0 < shards[-1]["count"] <= 37
    for s in shards:
        assert len(np.load(directory / s["file"], mmap_mode="r")) == s["count"]

    tokenized, opened = open_prepared(directory)
    assert opened["counts"] == {
        "documents": sum(c.num_documents for c in chunks),
        "sentences": sum(len(c.sentence_starts) - 1 for c in chunks),
        "tokens": len(tokens),
    }
    assert isinstance(tokenized.token_ids, ShardedTokens) and len(tokenized.token_ids) == len(tokens)
    index = np.random.default_rng(0).integers(0, len(tokens), size=500)
    np.testing.assert_array_equal(tokenized.token_ids[index], tokens[index])
    np.testing.assert_array_equal(tokenized.token_ids[30:80], tokens[30:80])  # a slice across shards
    np.testing.assert_array_equal(tokenized.token_ids[np.arange(len(tokens)).reshape(-1, 1)], tokens.reshape(-1, 1))
    # Offsets are global: the chunks' local offsets are shifted as they are appended.
    whole = encode_documents([d for n in (3, 1, 7, 2) for d in split_documents(_text(n, seed=n), "line")], plain, np.uint16)
    _assert_same(tokenized, whole)
    verify(directory)


def test_sharded_tokens_with_uneven_and_empty_shards() -> None:
    shards = [np.array([1, 2, 3]), np.array([], dtype=np.int64), np.array([4, 5]), np.array([6])]
    tokens = ShardedTokens(shards)
    assert len(tokens) == 6
    np.testing.assert_array_equal(tokens[np.array([5, 0, 3, 2, 4, 1])], [6, 1, 4, 3, 5, 2])
    np.testing.assert_array_equal(tokens[2:5], [3, 4, 5])
    assert tokens[np.array([], dtype=np.int64)].shape == (0,)


def test_token_dtype() -> None:
    assert token_dtype(30522) == np.uint16 and token_dtype(1 << 16) == np.uint16
    assert token_dtype((1 << 16) + 1) == np.int32 and token_dtype(250_002) == np.int32


# ---------------------------------------------------------------------------------------------
# Reuse and rebuild


def test_reused_then_rebuilt(tmp_path: Path, minilm: BertTokenizerFast, minilm_dir: str) -> None:
    path = _corpus(tmp_path)
    data = DataConfig(path=(str(path),))  # the cache location ($BERT_FLAX_CACHE)
    first = _prepare(data, minilm, minilm_dir)
    assert first.built and first.directory.is_relative_to(tmp_path / "bert_flax_cache")
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in first.directory.iterdir()}
    start = time.perf_counter()
    second = _prepare(data, minilm, minilm_dir)
    assert time.perf_counter() - start < 2.0
    assert not second.built and second.directory == first.directory
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in second.directory.iterdir()} == before  # not rewritten
    _assert_same(second.tokenized, first.tokenized)
    # A new tokenizer object for the same tokenizer (another process would load one) finds it too,
    # even after transformers rewrote its truncation and padding state.
    fresh = load_tokenizer(TokenizerConfig(name=minilm_dir))
    fresh("Some call", truncation=True, max_length=4, padding="max_length")
    assert not _prepare(data, fresh, minilm_dir).built

    content = _files(first.directory)
    rebuilt = _prepare(data, minilm, minilm_dir, rebuild=True)
    assert rebuilt.built and rebuilt.directory == first.directory
    assert (rebuilt.directory / MANIFEST).stat().st_ino != before[MANIFEST][0]  # written again ...
    assert _files(rebuilt.directory) == content  # ... with the same content
    assert _siblings(first.directory) == []  # neither the temporary nor the old directory is left

    # A changed source is another cache entry (the key holds sizes and mtimes): prepared anew.
    with path.open("a", encoding="utf-8") as f:
        f.write("One more line.\n")
    changed = _prepare(data, minilm, minilm_dir)
    assert changed.built and changed.directory != first.directory
    assert changed.tokenized.num_documents == first.tokenized.num_documents + 1


# ---------------------------------------------------------------------------------------------
# Bad input: one UserError, nothing half published


def test_truncated_or_missing_token_file_is_damaged(tmp_path: Path, minilm: BertTokenizerFast, minilm_dir: str) -> None:
    data = DataConfig(path=(str(_corpus(tmp_path)),), prepared_dir=str(tmp_path / "prepared"))
    good = _prepare(data, minilm, minilm_dir)
    directory = good.directory
    tokens = directory / "tokens-00000.npy"
    content = tokens.read_bytes()
    del good  # its arrays map the file truncated below (reading them then would be SIGBUS)
    for size in (len(content) - 2, 300, 50, 0):  # inside the data, inside the header, nothing at all
        os.truncate(tokens, size)
        with pytest.raises(UserError) as info:
            _prepare(data, minilm, minilm_dir)
        message = _one_line(info)
        assert "damaged" in message and f"tokens-00000.npy has {size} bytes" in message, message
        assert "bert-flax prepare --force" in message
    tokens.unlink()
    with pytest.raises(UserError, match="tokens-00000.npy is missing"):
        open_prepared(directory)
    # The rebuild the message asks for repairs it.
    repaired = _prepare(data, minilm, minilm_dir, rebuild=True)
    assert tokens.read_bytes() == content
    _assert_same(repaired.tokenized, tokenize_documents(split_documents(Path(data.path[0]).read_text(encoding="utf-8"), "line"), minilm))


def test_changed_bytes_fail_verification(tmp_path: Path, minilm: BertTokenizerFast, minilm_dir: str) -> None:
    data = DataConfig(path=(str(_corpus(tmp_path)),), prepared_dir=str(tmp_path / "prepared"))
    directory = _prepare(data, minilm, minilm_dir).directory
    for name in ("tokens-00000.npy", "sentence_starts.npy"):
        path = directory / name
        original = path.read_bytes()
        changed = bytearray(original)
        changed[128 + 8] ^= 0xFF  # in the data (after the 128-byte header), not the last offset
        path.write_bytes(bytes(changed))
        open_prepared(directory)  # sizes match: opening does not read the data
        with pytest.raises(UserError) as info:
            verify(directory)
        message = _one_line(info)
        assert name in message and "does not match" in message and "sha256" in message
        path.write_bytes(original)
    verify(directory)


def test_prepared_with_another_tokenizer(tmp_path: Path, minilm: BertTokenizerFast, minilm_dir: str) -> None:
    path = _corpus(tmp_path)
    data = DataConfig(path=(str(path),), prepared_dir=str(tmp_path / "prepared"))
    directory = _prepare(data, minilm, minilm_dir).directory
    content = _files(directory)
    trained = load_tokenizer(TokenizerConfig(train=True, vocab_size=300), data, tmp_path / "cache")
    with pytest.raises(UserError) as info:
        ensure_prepared(data, trained.backend_tokenizer, "trained", progress=False)
    message = _one_line(info)
    assert f"was made with tokenizer '{minilm_dir}', not with this config's 'trained'" in message
    assert "tokenizer.name" in message and "bert-flax prepare --force" in message
    assert _files(directory) == content  # left as it was
    # --force (rebuild) replaces it with the config's tokenizer.
    rebuilt = ensure_prepared(data, trained.backend_tokenizer, "trained", progress=False, rebuild=True)
    assert rebuilt.manifest["tokenizer"] == "trained" and rebuilt.manifest["token_dtype"] == "uint16"
    _assert_same(rebuilt.tokenized, tokenize_documents(split_documents(path.read_text(encoding="utf-8"), "line"), trained))


def test_source_changed_since_prepared(tmp_path: Path, minilm: BertTokenizerFast, minilm_dir: str) -> None:
    path = _corpus(tmp_path)
    data = DataConfig(path=(str(path),), prepared_dir=str(tmp_path / "prepared"))
    directory = _prepare(data, minilm, minilm_dir).directory
    content = _files(directory)
    with pytest.raises(UserError) as info:  # documents split another way than when prepared
        _prepare(DataConfig(path=data.path, prepared_dir=data.prepared_dir, documents="blank_line"), minilm, minilm_dir)
    assert "'line'" in _one_line(info) and "'blank_line'" in str(info.value)
    stat = path.stat()
    path.write_bytes(_text(120, seed=1).encode("utf-8"))  # rewritten
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(UserError) as info:
        _prepare(data, minilm, minilm_dir)
    message = _one_line(info)
    assert str(path.resolve()) in message and "changed since it was prepared" in message
    assert "bert-flax prepare --force" in message and str(directory) in message
    with pytest.raises(UserError, match="was not made from"):  # another file
        _prepare(DataConfig(path=(str(_corpus(tmp_path, name="other.txt")),), prepared_dir=data.prepared_dir), minilm, minilm_dir)
    assert _files(directory) == content


def test_source_changed_under_a_trained_tokenizer(tmp_path: Path) -> None:
    """The tokenizer trained on the changed corpus differs too; the cause reported is the changed source."""
    path = _corpus(tmp_path)
    data = DataConfig(path=(str(path),), prepared_dir=str(tmp_path / "prepared"))
    config = TokenizerConfig(train=True, vocab_size=300)
    before = load_tokenizer(config, data, tmp_path / "cache")
    ensure_prepared(data, before.backend_tokenizer, "trained", progress=False)
    with path.open("a", encoding="utf-8") as f:
        f.write("Zebra quagga okapi, appended after preparing.\n" * 20)
    after = load_tokenizer(config, data, tmp_path / "cache")
    assert after.get_vocab() != before.get_vocab()
    with pytest.raises(UserError) as info:
        ensure_prepared(data, after.backend_tokenizer, "trained", progress=False)
    assert "changed since it was prepared" in _one_line(info)


@pytest.mark.parametrize("workers", [1, 2])
def test_undecodable_bytes_name_file_and_offset(
    tmp_path: Path, minilm: BertTokenizerFast, minilm_dir: str, workers: int
) -> None:
    good = _text(60).encode("utf-8")
    path = tmp_path / "bad.txt"
    path.write_bytes(good + b"caf\xe9 in Latin-1\n" + _text(10, seed=3).encode("utf-8"))
    directory = tmp_path / "prepared"
    data = DataConfig(path=(str(path),), prepare_workers=workers, prepare_chunk_bytes=1024, prepared_dir=str(directory))
    with pytest.raises(UserError) as info:
        _prepare(data, minilm, minilm_dir)
    message = _one_line(info)
    assert str(path) in message and f"byte offset {len(good) + 3}" in message and "UTF-8" in message
    assert not directory.exists() and _siblings(directory) == []


def test_a_dataset_without_text(tmp_path: Path, hf_datasets_cache: Path, minilm: BertTokenizerFast, minilm_dir: str) -> None:
    path = tmp_path / "blank.txt"
    path.write_text("\n \n\n", encoding="utf-8")
    directory = tmp_path / "prepared"
    with pytest.raises(UserError) as info:
        _prepare(DataConfig(dataset="text", path=(str(path),), prepared_dir=str(directory)), minilm, minilm_dir)
    assert "no documents" in _one_line(info) and "text" in str(info.value)
    assert not directory.exists() and _siblings(directory) == []


def test_interrupted_prepare_leaves_nothing_that_looks_complete(
    tmp_path: Path, minilm: BertTokenizerFast, minilm_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = DataConfig(path=(str(_corpus(tmp_path)),), cache_dir=str(tmp_path / "cache"))
    finish = PreparedWriter.finish

    def interrupted(self: PreparedWriter) -> dict:
        raise KeyboardInterrupt  # Ctrl-C after every token was written, before the manifest

    monkeypatch.setattr(PreparedWriter, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _prepare(data, minilm, minilm_dir)
    assert not (tmp_path / "cache").exists()  # not even the cache directories it created
    monkeypatch.setattr(PreparedWriter, "finish", finish)
    location = _prepare(data, minilm, minilm_dir).directory

    # A killed prepare leaves its temporary sibling: no manifest, so nothing takes it for a prepared dataset.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    leftover = location.with_name(f".{location.name}.tmp-{dead_pid}-0123abcd")
    leftover.mkdir()
    (leftover / "tokens-00000.npy").write_bytes(b"\0" * 1000)
    running = location.with_name(f".{location.name}.tmp-{os.getppid()}-4567cdef")  # a live process' build
    running.mkdir()
    with pytest.raises(UserError, match="not a prepared dataset"):
        open_prepared(leftover)
    assert not _prepare(data, minilm, minilm_dir).built  # reused: leftovers are cleared when building
    assert leftover.exists()
    assert _prepare(data, minilm, minilm_dir, rebuild=True).built
    assert _siblings(location) == [running.name]  # the dead one's is gone, the live one's kept

    # An interrupted rebuild leaves the old directory as it was.
    content = _files(location)
    monkeypatch.setattr(PreparedWriter, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _prepare(data, minilm, minilm_dir, rebuild=True)
    assert _files(location) == content and _siblings(location) == [running.name]


# ---------------------------------------------------------------------------------------------
# `bert-flax prepare`


def _cli(tmp_path: Path, *argv: str, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """`bert-flax prepare ARGV` in a fresh process; with `file_size_limit`, as on a full disk: the
    process may write no file past that size (writes fail with EFBIG; SIGXFSZ is ignored)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BERT_FLAX_CACHE": str(tmp_path / "cli_cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "bert_flax.cli", "prepare", *argv]
    if file_size_limit:  # the limit and the ignored signal survive exec (no preexec_fn in a threaded parent)
        limit = (
            "import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit})); "
            "os.execv(sys.executable, sys.argv[1:])"
        )
        command = [sys.executable, "-c", limit, *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def test_cli_prepare_and_verify(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path, num_lines=200)
    directory = tmp_path / "prepared"
    args = (f"data.path={corpus}", f"data.prepared_dir={directory}", "tokenizer.train=true", "tokenizer.vocab_size=300")
    result = _cli(tmp_path, "--quiet", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"prepared: {directory} (") and "uint16" in result.stdout
    manifest = read_manifest(directory)
    assert manifest["tokenizer"] == "trained"
    assert f"{manifest['counts']['tokens']:,} tokens" in result.stdout
    assert result.stderr == ""

    tokens = directory / "tokens-00000.npy"
    changed = bytearray(tokens.read_bytes())
    changed[200] ^= 0xFF
    tokens.write_bytes(bytes(changed))
    result = _cli(tmp_path, "--verify", *args)  # the same trained tokenizer (cached): only the bytes differ
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "tokens-00000.npy does not match the sha256" in line


def test_cli_disk_full_publishes_nothing(tmp_path: Path, minilm: BertTokenizerFast, minilm_dir: str) -> None:
    corpus = _corpus(tmp_path, num_lines=3000)  # about 90,000 uint16 tokens (180 KB): more than the limit allows
    limit = 128 * 1024

    # In the cache: no prepared directory, no temporary one, not even the cache's prepared/ directory.
    result = _cli(tmp_path, "--quiet", f"data.path={corpus}", f"tokenizer.name={minilm_dir}", file_size_limit=limit)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert "disk full" in line and "nothing was published" in line
    assert [p for p in (tmp_path / "cli_cache").rglob("*") if "prepared" in str(p)] == []

    # --force over an existing prepared directory: the old one stays, whole.
    directory = tmp_path / "prepared"
    data = DataConfig(path=(str(corpus),), prepared_dir=str(directory))
    _prepare(data, minilm, minilm_dir)
    assert (directory / "tokens-00000.npy").stat().st_size > limit
    content = _files(directory)
    result = _cli(
        tmp_path, "--quiet", "--force", f"data.path={corpus}", f"data.prepared_dir={directory}",
        f"tokenizer.name={minilm_dir}", file_size_limit=limit,
    )
    assert result.returncode == 2 and "disk full" in result.stderr and len(result.stderr.splitlines()) == 1
    assert _files(directory) == content and _siblings(directory) == []
    verify(directory)
