"""Tests for the tokenizer layer: WordPiece learning, the corpus sample and the trained-tokenizer cache,
TokenIds, tokenized documents (prepared datasets: test_prepare.py)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from transformers import BertTokenizerFast

from bert_flax.config import DataConfig, TokenizerConfig
from bert_flax.data import tokenizer as tokenizer_module
from bert_flax.data.documents import split_documents
from bert_flax.data.reader import read_chunks
from bert_flax.data.sentences import split_sentences
from bert_flax.data.token_corpus import TokenizedCorpus, tokenize_documents
from bert_flax.data.tokenizer import SPECIAL_TOKENS, TokenIds, load_tokenizer, trained_tokenizer_dir
from bert_flax.data.tokenizer_sample import WINDOW_BYTES, sample_documents
from bert_flax.data.tokenizer_wordpiece import learn_vocab
from bert_flax.errors import UserError
from bert_flax.hub import hub_reachable


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERT_FLAX_CACHE", str(tmp_path / "bert_flax_cache"))


@pytest.fixture(scope="module")
def minilm(minilm_dir: str) -> BertTokenizerFast:
    return load_tokenizer(TokenizerConfig(name=minilm_dir))


@pytest.fixture(scope="module")
def data(corpus_path: Path) -> DataConfig:
    return DataConfig(path=(str(corpus_path),))


@pytest.fixture(scope="module")
def documents(data: DataConfig) -> list[str]:
    return [document for chunk in read_chunks(data, 1 << 20) for document in chunk.documents]


def _small_corpus(tmp_path: Path, corpus_lines: list[str], name: str = "small.txt", lines: int = 60) -> DataConfig:
    """A copy of the corpus' first `lines` lines (training on it is quick)."""
    path = tmp_path / name
    path.write_text("\n".join(corpus_lines[:lines]) + "\n", encoding="utf-8")
    return DataConfig(path=(str(path),))


# ---------------------------------------------------------------------------------------------
# learn_vocab


def test_learn_vocab_is_deterministic(corpus_lines: list[str]) -> None:
    first = learn_vocab(corpus_lines, 1000, list(SPECIAL_TOKENS))
    second = learn_vocab(list(corpus_lines), 1000, list(SPECIAL_TOKENS))
    assert first == second
    assert first[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert len(first) == len(set(first))  # no duplicates
    assert len(SPECIAL_TOKENS) < len(first) <= 1000


def test_learn_vocab_structure(corpus_lines: list[str]) -> None:
    vocab = learn_vocab(corpus_lines, 600, list(SPECIAL_TOKENS))
    # After the specials, the alphabet (single characters and their ## forms), sorted ...
    body = vocab[len(SPECIAL_TOKENS) :]
    alphabet = [t for t in body if len(t.removeprefix("##")) == 1]
    assert body[: len(alphabet)] == sorted(alphabet)
    # ... then merged pieces; uncased by default.
    assert any(len(t.removeprefix("##")) > 1 for t in body)
    assert all(t == t.lower() for t in body)
    # Larger vocabularies extend smaller ones (merges are learnt in the same order).
    assert learn_vocab(corpus_lines, 800, list(SPECIAL_TOKENS))[:600] == vocab


def test_learn_vocab_min_frequency_stops_merging() -> None:
    documents = ["abc abc abc xyz"]
    vocab = learn_vocab(documents, 1000, list(SPECIAL_TOKENS), min_frequency=2)
    assert "abc" in vocab
    assert "xy" not in vocab and "xyz" not in vocab  # pairs seen once are not merged
    assert "xyz" in learn_vocab(documents, 1000, list(SPECIAL_TOKENS), min_frequency=1)


def test_learn_vocab_cased(corpus_lines: list[str]) -> None:
    cased = learn_vocab(corpus_lines[:50], 500, list(SPECIAL_TOKENS), lowercase=False)
    assert any(t != t.lower() for t in cased)


# ---------------------------------------------------------------------------------------------
# Trained tokenizer cache


def test_trained_tokenizer_is_cached(data: DataConfig, documents: list[str], tmp_path: Path) -> None:
    config = TokenizerConfig(train=True, vocab_size=1000)
    first = load_tokenizer(config, data, tmp_path)
    tokenizers_dir = tmp_path / "tokenizers"
    entries = sorted(tokenizers_dir.iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # no leftover temp dirs
    assert trained_tokenizer_dir(data, config, tmp_path) == entries[0]
    vocab_file = entries[0] / "vocab.txt"
    mtime = vocab_file.stat().st_mtime_ns
    second = load_tokenizer(config, data, tmp_path)
    assert second.get_vocab() == first.get_vocab()
    assert sorted(tokenizers_dir.iterdir()) == entries
    assert vocab_file.stat().st_mtime_ns == mtime  # not retrained
    # The corpus is smaller than the sample, so the vocabulary is the one learn_vocab gives on all of it.
    expected = learn_vocab(documents, 1000, list(SPECIAL_TOKENS), 2, True)
    assert vocab_file.read_text(encoding="utf-8").split("\n")[:-1] == expected
    assert first.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == list(SPECIAL_TOKENS)
    assert len(first) == len(expected)
    # It is a working BERT tokenizer: lower-cases and splits into known pieces.
    ids = first("Reason NATURE soul.", add_special_tokens=False)["input_ids"]
    assert ids and first.unk_token_id not in ids
    assert first.decode(ids).replace(" ", "") == "reasonnaturesoul."


def test_cached_tokenizer_reads_no_text(
    tmp_path: Path, corpus_lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is the corpus' identity: a cached tokenizer is found without sampling the corpus."""
    data = _small_corpus(tmp_path, corpus_lines)
    config = TokenizerConfig(train=True, vocab_size=300)
    trained = load_tokenizer(config, data, tmp_path)

    def no_sampling(*args: object) -> None:
        raise AssertionError("the corpus was sampled again")

    monkeypatch.setattr(tokenizer_module, "sample_documents", no_sampling)
    assert load_tokenizer(config, data, tmp_path).get_vocab() == trained.get_vocab()


def test_trained_tokenizer_key_depends_on_config_and_source(tmp_path: Path, corpus_lines: list[str]) -> None:
    data = _small_corpus(tmp_path, corpus_lines)
    cache = tmp_path / "cache"

    def key(config: TokenizerConfig, source: DataConfig = data) -> str:
        return trained_tokenizer_dir(source, config, cache).name

    base = TokenizerConfig(train=True, vocab_size=300)
    keys = [key(base)]
    assert key(base) == keys[0]  # the same config and files: the same entry
    keys.append(key(TokenizerConfig(train=True, vocab_size=400)))
    keys.append(key(TokenizerConfig(train=True, vocab_size=300, min_frequency=1)))
    keys.append(key(TokenizerConfig(train=True, vocab_size=300, lowercase=False)))
    keys.append(key(TokenizerConfig(train=True, vocab_size=300, train_sample_bytes=5000)))
    keys.append(key(base, DataConfig(path=data.path, documents="blank_line")))
    keys.append(key(base, _small_corpus(tmp_path, corpus_lines, "other.txt", lines=40)))  # another file
    # The same bytes touched with a new mtime: another source identity, another key (nothing is read).
    (path,) = map(Path, data.path)
    mtime = path.stat().st_mtime_ns
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    keys.append(key(base))
    assert len(set(keys)) == len(keys)
    assert len(list((cache / "tokenizers").iterdir())) == len(keys)


def test_trained_tokenizer_repaired_when_incomplete(tmp_path: Path, corpus_lines: list[str]) -> None:
    data = _small_corpus(tmp_path, corpus_lines)
    config = TokenizerConfig(train=True, vocab_size=300)
    good = load_tokenizer(config, data, tmp_path)
    (entry,) = (tmp_path / "tokenizers").iterdir()
    (entry / "tokenizer.json").unlink()  # an interrupted or damaged entry
    again = load_tokenizer(config, data, tmp_path)
    assert again.get_vocab() == good.get_vocab()
    assert (entry / "tokenizer.json").is_file()
    assert [p.name for p in (tmp_path / "tokenizers").iterdir()] == [entry.name]  # no temp dirs left


def test_training_needs_the_data_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data config"):
        load_tokenizer(TokenizerConfig(train=True), None, tmp_path)


# ---------------------------------------------------------------------------------------------
# The sample a tokenizer is trained on


@pytest.fixture(scope="module")
def large_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """About 6 MiB of numbered, distinct lines (some multibyte) behind a byte-order mark, and its documents."""
    path = tmp_path_factory.mktemp("large") / "large.txt"
    words = ["stoic", "reason", "naïve", "Γάμμα", "nature", "—", "soul", "x"]
    lines = [f"document {i} " + " ".join(words[(i * k) % len(words)] for k in range(i % 23 + 3)) for i in range(60_000)]
    text = "\n".join(lines) + "\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert path.stat().st_size > 5 * WINDOW_BYTES
    return path, split_documents(text, "line")


@pytest.mark.parametrize("windows", [1, 3])
def test_sample_of_a_large_file_reads_about_sample_bytes(large_corpus: tuple[Path, list[str]], windows: int) -> None:
    path, documents = large_corpus
    data = DataConfig(path=(str(path),))
    sample_bytes = windows * WINDOW_BYTES
    sample = list(sample_documents(data, sample_bytes))
    assert 0.5 * sample_bytes <= sum(map(len, sample)) <= 1.5 * sample_bytes
    assert sample == list(sample_documents(data, sample_bytes))  # seeded: the same every time
    # Whole documents of the corpus (none cut at a window's edges), none twice, in corpus order.
    index = {document: i for i, document in enumerate(documents)}
    positions = [index.get(document, -1) for document in sample]
    assert -1 not in positions, [d for d in sample if d not in index][:3]
    assert positions == sorted(set(positions))
    if windows > 1:  # spread over the file, not its first bytes
        assert positions[-1] > 0.6 * len(documents)


def test_sample_windows_never_overlap(large_corpus: tuple[Path, list[str]]) -> None:
    """A sample just below the corpus' size: windows tile the file, the BOM is not text, nothing twice."""
    path, documents = large_corpus
    size = path.stat().st_size
    sample = list(sample_documents(DataConfig(path=(str(path),)), size - 1000))
    assert len(sample) == len(set(sample))
    assert set(sample) <= set(documents)
    assert len(sample) > 0.99 * len(documents)  # a few at window edges may be left out
    assert sample[0] == documents[0]


def test_sample_of_a_small_corpus_is_all_of_it(data: DataConfig, documents: list[str]) -> None:
    assert list(sample_documents(data, 20_000_000)) == documents
    # A sample smaller than the corpus reads one window (at most WINDOW_BYTES) of whole documents.
    small = list(sample_documents(data, 5000))
    assert small and set(small) <= set(documents) and sum(map(len, small)) <= WINDOW_BYTES


def test_sample_of_blank_line_documents(tmp_path: Path) -> None:
    path = tmp_path / "paragraphs.txt"
    paragraphs = [f"paragraph {i}\n" + "line of text\n" * (i % 9 + 1) for i in range(30_000)]
    path.write_text("\n".join(paragraphs), encoding="utf-8")
    data = DataConfig(path=(str(path),), documents="blank_line")
    expected = set(split_documents(path.read_text(encoding="utf-8"), "blank_line"))
    sample = list(sample_documents(data, 2 * WINDOW_BYTES))
    assert sample and set(sample) <= expected


# ---------------------------------------------------------------------------------------------
# TokenIds


def test_token_ids_from_minilm(minilm: BertTokenizerFast) -> None:
    ids = TokenIds.from_tokenizer(minilm)
    vocab = minilm.get_vocab()
    assert (ids.cls, ids.sep, ids.pad, ids.mask) == (vocab["[CLS]"], vocab["[SEP]"], vocab["[PAD]"], vocab["[MASK]"])
    assert (ids.cls, ids.sep, ids.pad, ids.mask) == (101, 102, 0, 103)  # bert-base-uncased
    assert ids.vocab_size == len(vocab) == 30522
    tokens = minilm.convert_ids_to_tokens(list(range(ids.vocab_size)))

    random_ids = ids.random_ids
    assert random_ids.dtype == np.int32
    assert np.all(np.diff(random_ids) > 0)  # sorted, unique
    assert random_ids.min() >= 0 and random_ids.max() < ids.vocab_size
    random_set = set(random_ids.tolist())
    assert not random_set & set(minilm.all_special_ids)
    assert not random_set & {ids.cls, ids.sep, ids.pad, ids.mask, minilm.unk_token_id}
    unused = {i for i, t in enumerate(tokens) if re.fullmatch(r"\[unused\d+\]", t)}
    assert len(unused) > 900
    assert not random_set & unused
    expected = set(range(ids.vocab_size)) - unused - set(minilm.all_special_ids)
    assert random_set == expected
    assert vocab["the"] in random_set and vocab["##s"] in random_set

    continuation = ids.is_continuation_V
    assert continuation.dtype == bool and continuation.shape == (ids.vocab_size,)
    assert continuation.tolist() == [t.startswith("##") for t in tokens]
    assert continuation[vocab["##s"]] and not continuation[vocab["the"]] and not continuation[vocab["#"]]
    assert 4000 < continuation.sum() < 7000


def test_token_ids_from_trained_tokenizer(data: DataConfig, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(TokenizerConfig(train=True, vocab_size=500), data, tmp_path)
    ids = TokenIds.from_tokenizer(tokenizer)
    assert [ids.pad, ids.cls, ids.sep, ids.mask] == [0, 2, 3, 4]  # SPECIAL_TOKENS order
    assert ids.vocab_size == len(tokenizer)
    assert set(ids.random_ids.tolist()) == set(range(len(SPECIAL_TOKENS), ids.vocab_size))


# ---------------------------------------------------------------------------------------------
# Loading by name


def test_local_tokenizer_dir(minilm_dir: str, minilm: BertTokenizerFast) -> None:
    assert minilm.cls_token_id == 101
    assert minilm("hello world", add_special_tokens=False)["input_ids"] == [7592, 2088]


def test_directory_without_tokenizer(tmp_path: Path) -> None:
    empty = tmp_path / "not_a_tokenizer"
    empty.mkdir()
    with pytest.raises(UserError) as info:
        load_tokenizer(TokenizerConfig(name=str(empty)))
    message = str(info.value)
    assert str(empty) in message and "tokenizer.train=true" in message


def test_offline_hub_name_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    try:
        start = time.monotonic()
        with pytest.raises(UserError) as info:
            load_tokenizer(TokenizerConfig(name="bert-base-uncased"))
        elapsed = time.monotonic() - start
    finally:
        hub_reachable.cache_clear()
    message = str(info.value)
    assert "bert-base-uncased" in message and "tokenizer.train=true" in message
    assert "\n" not in message
    assert elapsed < 10


# ---------------------------------------------------------------------------------------------
# Tokenized corpus


def _assert_consistent(tokenized: TokenizedCorpus, num_documents: int) -> None:
    assert tokenized.token_ids.dtype == np.int32
    starts, docs = tokenized.sentence_starts, tokenized.document_starts
    assert starts[0] == 0 and starts[-1] == len(tokenized.token_ids)
    assert np.all(np.diff(starts) > 0)  # empty sentences are dropped
    assert docs[0] == 0 and docs[-1] == len(starts) - 1
    assert np.all(np.diff(docs) >= 0)
    assert tokenized.num_documents == num_documents
    assert tokenized.sentence_counts().sum() == len(starts) - 1


def test_tokenized_offsets_match_documents(documents: list[str], minilm: BertTokenizerFast) -> None:
    tokenized = tokenize_documents(documents, minilm)
    _assert_consistent(tokenized, len(documents))
    token_starts = tokenized.document_token_starts()
    assert token_starts[0] == 0 and token_starts[-1] == len(tokenized.token_ids) and len(token_starts) == len(documents) + 1
    for document in range(0, len(documents), 7):
        text = documents[document]
        first, last = tokenized.document_token_span(document)
        assert (first, last) == (token_starts[document], token_starts[document + 1])
        assert tokenized.token_ids[first:last].tolist() == minilm(text, add_special_tokens=False)["input_ids"]
        sentences = split_sentences(text)
        assert tokenized.sentence_counts()[document] == len(sentences)
        s0 = tokenized.document_starts[document]
        for k, sentence in enumerate(sentences):
            a, b = tokenized.sentence_starts[s0 + k], tokenized.sentence_starts[s0 + k + 1]
            assert tokenized.token_ids[a:b].tolist() == minilm(sentence, add_special_tokens=False)["input_ids"]


def test_tokenized_keeps_empty_documents_aligned(minilm: BertTokenizerFast) -> None:
    documents = ("First one. Second one.", "\u200b", "Last.")  # the middle one tokenizes to nothing
    tokenized = tokenize_documents(documents, minilm)
    _assert_consistent(tokenized, 3)
    assert tokenized.sentence_counts().tolist() == [2, 0, 1]
    first, last = tokenized.document_token_span(2)
    assert minilm.decode(tokenized.token_ids[first:last]) == "last."
