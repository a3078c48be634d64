"""Tests for the tokenizer layer: WordPiece learning, trained-tokenizer cache, TokenIds, tokenized corpus."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from transformers import BertTokenizerFast

from bert_flax.config import DataConfig, TokenizerConfig
from bert_flax.data.corpus import Corpus, load_corpus
from bert_flax.data.sentences import split_sentences
from bert_flax.data.tokenized import TokenizedCorpus, tokenize_corpus, tokenize_documents
from bert_flax.data.tokenizer import SPECIAL_TOKENS, TokenIds, load_tokenizer
from bert_flax.data.wordpiece import learn_vocab
from bert_flax.errors import UserError
from bert_flax.hub import hub_reachable


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERT_FLAX_CACHE", str(tmp_path / "bert_flax_cache"))


@pytest.fixture(scope="module")
def minilm(minilm_dir: str) -> BertTokenizerFast:
    return load_tokenizer(TokenizerConfig(name=minilm_dir))


@pytest.fixture(scope="module")
def corpus(corpus_path: Path) -> Corpus:
    return load_corpus(DataConfig(path=(str(corpus_path),)))


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


def test_trained_tokenizer_is_cached(corpus: Corpus, tmp_path: Path) -> None:
    config = TokenizerConfig(train=True, vocab_size=1000)
    first = load_tokenizer(config, corpus, tmp_path)
    tokenizers_dir = tmp_path / "tokenizers"
    entries = sorted(tokenizers_dir.iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # no leftover .train- dirs
    vocab_file = entries[0] / "vocab.txt"
    mtime = vocab_file.stat().st_mtime_ns
    second = load_tokenizer(config, corpus, tmp_path)
    assert second.get_vocab() == first.get_vocab()
    assert sorted(tokenizers_dir.iterdir()) == entries
    assert vocab_file.stat().st_mtime_ns == mtime  # not retrained
    # The vocabulary is the one learn_vocab gives, in id order.
    expected = learn_vocab(corpus.documents, 1000, list(SPECIAL_TOKENS), 2, True)
    assert vocab_file.read_text(encoding="utf-8").split("\n")[:-1] == expected
    assert first.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == list(SPECIAL_TOKENS)
    assert len(first) == len(expected)
    # It is a working BERT tokenizer: lower-cases and splits into known pieces.
    ids = first("Reason NATURE soul.", add_special_tokens=False)["input_ids"]
    assert ids and first.unk_token_id not in ids
    assert first.decode(ids).replace(" ", "") == "reasonnaturesoul."


def test_trained_tokenizer_key_depends_on_config_and_corpus(corpus: Corpus, tmp_path: Path) -> None:
    load_tokenizer(TokenizerConfig(train=True, vocab_size=1000), corpus, tmp_path)
    load_tokenizer(TokenizerConfig(train=True, vocab_size=500), corpus, tmp_path)
    small = Corpus(documents=corpus.documents[:20], source="first 20", sha256="0" * 64)
    load_tokenizer(TokenizerConfig(train=True, vocab_size=500), small, tmp_path)
    assert len(list((tmp_path / "tokenizers").iterdir())) == 3


def test_trained_tokenizer_repaired_when_incomplete(corpus: Corpus, tmp_path: Path) -> None:
    config = TokenizerConfig(train=True, vocab_size=500)
    good = load_tokenizer(config, corpus, tmp_path)
    (entry,) = (tmp_path / "tokenizers").iterdir()
    (entry / "tokenizer.json").unlink()  # an interrupted or damaged entry
    again = load_tokenizer(config, corpus, tmp_path)
    assert again.get_vocab() == good.get_vocab()
    assert (entry / "tokenizer.json").is_file()


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


def test_token_ids_from_trained_tokenizer(corpus: Corpus, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(TokenizerConfig(train=True, vocab_size=500), corpus, tmp_path)
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


def _assert_equal(a: TokenizedCorpus, b: TokenizedCorpus) -> None:
    np.testing.assert_array_equal(a.token_ids, b.token_ids)
    np.testing.assert_array_equal(a.sentence_starts, b.sentence_starts)
    np.testing.assert_array_equal(a.document_starts, b.document_starts)


def test_tokenized_offsets_match_documents(corpus: Corpus, minilm: BertTokenizerFast) -> None:
    tokenized = tokenize_documents(corpus.documents, minilm)
    _assert_consistent(tokenized, len(corpus.documents))
    for document in range(0, len(corpus.documents), 7):
        text = corpus.documents[document]
        first, last = tokenized.document_token_span(document)
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


def test_tokenize_corpus_cache(corpus: Corpus, minilm: BertTokenizerFast, tmp_path: Path) -> None:
    built = tokenize_corpus(corpus, minilm, tmp_path)
    _assert_consistent(built, len(corpus.documents))
    files = list((tmp_path / "tokenized").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz" and not files[0].name.startswith(".")
    mtime = files[0].stat().st_mtime_ns
    loaded = tokenize_corpus(corpus, minilm, tmp_path)
    _assert_equal(loaded, built)
    assert files[0].stat().st_mtime_ns == mtime  # read, not rewritten
    with np.load(files[0]) as arrays:
        np.testing.assert_array_equal(arrays["token_ids"], built.token_ids)
    # Uncached gives the same arrays.
    _assert_equal(tokenize_corpus(corpus, minilm, None), built)


def test_tokenize_corpus_cache_survives_tokenizer_calls(corpus: Corpus, minilm_dir: str, tmp_path: Path) -> None:
    """A freshly loaded tokenizer (MiniLM's tokenizer.json pads and truncates to 128) keeps its cache key.

    transformers rewrites the backend's truncation/padding state on every call; that state must
    not be part of the key, or the second call in a process misses the cache.
    """
    fresh = load_tokenizer(TokenizerConfig(name=minilm_dir))
    built = tokenize_corpus(corpus, fresh, tmp_path)
    (path,) = (tmp_path / "tokenized").iterdir()
    mtime = path.stat().st_mtime_ns
    fresh("Some other call", truncation=True, max_length=4, padding="max_length")
    _assert_equal(tokenize_corpus(corpus, fresh, tmp_path), built)
    assert [p.name for p in (tmp_path / "tokenized").iterdir()] == [path.name]
    assert path.stat().st_mtime_ns == mtime
    # Another process (a new tokenizer object) finds the same entry.
    _assert_equal(tokenize_corpus(corpus, load_tokenizer(TokenizerConfig(name=minilm_dir)), tmp_path), built)
    assert [p.name for p in (tmp_path / "tokenized").iterdir()] == [path.name]


def test_tokenize_corpus_cache_is_keyed_by_corpus_and_tokenizer(
    corpus: Corpus, minilm: BertTokenizerFast, tmp_path: Path
) -> None:
    tokenize_corpus(corpus, minilm, tmp_path)
    trained = load_tokenizer(TokenizerConfig(train=True, vocab_size=500), corpus, tmp_path)
    tokenize_corpus(corpus, trained, tmp_path)
    small = Corpus(documents=corpus.documents[:5], source="five", sha256="1" * 64)
    assert tokenize_corpus(small, minilm, tmp_path).num_documents == 5
    assert len(list((tmp_path / "tokenized").glob("*.npz"))) == 3


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "missing_array"])
def test_tokenize_corpus_rebuilds_damaged_cache(
    corpus: Corpus, minilm: BertTokenizerFast, tmp_path: Path, damage: str
) -> None:
    built = tokenize_corpus(corpus, minilm, tmp_path)
    (path,) = (tmp_path / "tokenized").iterdir()
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not an npz file at all" * 10)
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.savez(path, token_ids=built.token_ids)
    rebuilt = tokenize_corpus(corpus, minilm, tmp_path)
    _assert_equal(rebuilt, built)
    with np.load(path, allow_pickle=False) as arrays:  # the entry was rewritten whole
        assert sorted(arrays.files) == ["document_starts", "sentence_starts", "token_ids"]
        np.testing.assert_array_equal(arrays["token_ids"], built.token_ids)
    assert sorted(p.name for p in (tmp_path / "tokenized").iterdir()) == [path.name]  # no temp files
