"""Tests for the `bert-flax` CLI: inspect-data, bench-data, and one-line exit-2 errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import BATCH_KEYS
from transformers import BertTokenizerFast

from bert_flax.cli import main
from bert_flax.config import DataConfig
from bert_flax.data.reader import read_chunks
from bert_flax.data.token_corpus import tokenize_documents
from bert_flax.errors import EXIT_BAD_INPUT, UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(REPO_ROOT / "configs" / "smoke.yaml")
PROVENANCE_KEYS = {"tokens", "examples"}
EXAMPLE_KEYS = {"slot", "offset", "length", "next_sentence_label", "doc_a", "doc_b", "sentences_a", "sentences_b"}
IS_NEXT, NOT_NEXT = 0, 1


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERT_FLAX_CACHE", str(tmp_path / "bert_flax_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache shared by the successful runs, so the tokenizer is trained once."""
    return tmp_path_factory.mktemp("cli_cache")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _smoke_args(corpus: Path | str, cache: Path, *extra: str) -> list[str]:
    return ["--config", SMOKE, f"data.path={corpus}", f"data.cache_dir={cache}", *extra]


def _json_records(capsys: pytest.CaptureFixture[str], corpus: Path, cache: Path, num: int, *extra: str) -> list[dict[str, Any]]:
    code, out, err = _run(capsys, "inspect-data", *_smoke_args(corpus, cache, *extra), "--num", str(num), "--json")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == num
    return [json.loads(line) for line in lines]


def _trained_tokenizer(cache: Path) -> BertTokenizerFast:
    (entry,) = (cache / "tokenizers").iterdir()
    return BertTokenizerFast.from_pretrained(entry)


def _contains_run(haystack: list[int], needle: list[int]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


# ---------------------------------------------------------------------------------------------
# inspect-data


def test_inspect_data_json(capsys: pytest.CaptureFixture[str], corpus_path: Path, warm_cache: Path) -> None:
    records = _json_records(capsys, corpus_path, warm_cache, 3)
    for record in records:
        assert set(record) == BATCH_KEYS | PROVENANCE_KEYS
        (example,) = record["examples"]
        assert set(example) == EXAMPLE_KEYS
        assert len(record["input_ids"]) == len(record["tokens"]) == 64
        assert len(record["masked_lm_positions"]) == 12  # 64 × 0.15 rounded up to a multiple of 4
        assert record["next_sentence_labels"] == [example["next_sentence_label"]]
        assert example["next_sentence_label"] in (IS_NEXT, NOT_NEXT)
    # Deterministic: the same command prints the same examples.
    assert _json_records(capsys, corpus_path, warm_cache, 3) == records


def test_inspect_data_rows_are_consistent(capsys: pytest.CaptureFixture[str], corpus_path: Path, warm_cache: Path) -> None:
    records = _json_records(capsys, corpus_path, warm_cache, 24)
    tokenizer = _trained_tokenizer(warm_cache)
    documents = [d for chunk in read_chunks(DataConfig(path=(str(corpus_path),)), 1 << 20) for d in chunk.documents]
    tokenized = tokenize_documents(documents, tokenizer)
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id}

    def sentences_ids(document: int, sentences: list[int]) -> list[int]:
        first = int(tokenized.document_starts[document]) + sentences[0]
        last = int(tokenized.document_starts[document]) + sentences[-1] + 1
        assert last <= tokenized.document_starts[document + 1]
        return tokenized.token_ids[tokenized.sentence_starts[first] : tokenized.sentence_starts[last]].tolist()

    labels = set()
    for record in records:
        ids, tokens = record["input_ids"], record["tokens"]
        assert tokens == tokenizer.convert_ids_to_tokens(ids)
        length = sum(record["attention_mask"])
        assert record["attention_mask"] == [1] * length + [0] * (64 - length)
        assert all(t == "[PAD]" for t in tokens[length:])
        assert tokens[0] == "[CLS]" and tokens[length - 1] == "[SEP]"
        seps = [i for i, t in enumerate(tokens) if t == "[SEP]"]
        assert len(seps) == 2 and seps[1] == length - 1
        assert record["token_type_ids"] == [0] * (seps[0] + 1) + [1] * (length - seps[0] - 1) + [0] * (64 - length)

        # Undo the masking, then A and B are runs of the sentences they claim to come from.
        original = list(ids)
        chosen = [(p, t) for p, t, w in zip(record["masked_lm_positions"], record["masked_lm_ids"], record["masked_lm_weights"]) if w > 0]
        assert chosen and len({p for p, _ in chosen}) == len(chosen)
        assert set(record["masked_lm_weights"]) <= {0.0, 1.0}
        for position, token_id in chosen:
            assert 0 < position < length and position not in seps
            assert token_id not in special
            original[position] = token_id
        a_ids, b_ids = original[1 : seps[0]], original[seps[0] + 1 : seps[1]]
        assert a_ids and b_ids
        (example,) = record["examples"]
        assert (example["offset"], example["length"]) == (0, length)
        assert _contains_run(sentences_ids(example["doc_a"], example["sentences_a"]), a_ids)
        assert _contains_run(sentences_ids(example["doc_b"], example["sentences_b"]), b_ids)

        label = example["next_sentence_label"]
        labels.add(label)
        if label == IS_NEXT:
            assert example["doc_a"] == example["doc_b"]
            # B follows A (truncation may trim whole sentences off A's end or B's start).
            assert example["sentences_b"][0] >= example["sentences_a"][-1]
        else:
            assert example["doc_a"] != example["doc_b"]
    assert labels == {IS_NEXT, NOT_NEXT}


def test_inspect_data_readable(capsys: pytest.CaptureFixture[str], corpus_path: Path, warm_cache: Path) -> None:
    code, out, err = _run(capsys, "inspect-data", *_smoke_args(corpus_path, warm_cache), "--num", "24")
    assert code == 0, err
    headers = [line for line in out.splitlines() if line.startswith("#")]
    assert [h.split()[0] for h in headers] == [f"#{i}" for i in range(24)]
    assert all(("IsNext" in h) != ("NotNext" in h) for h in headers)
    assert any("IsNext" in h for h in headers) and any("NotNext" in h for h in headers)
    assert "[MASK→" in out
    assert "A: doc" in out and "B: doc" in out
    assert "[PAD]" not in out
    assert "[CLS]" in out


def test_inspect_data_packed_rows(capsys: pytest.CaptureFixture[str], corpus_path: Path, warm_cache: Path) -> None:
    """A packed row: several examples, each [CLS] … [SEP] at its offset with its own label and documents;
    the readable view puts each example on its own line."""
    packed = ("data.packing=true", "model.impl=fast", "data.max_examples_per_row=4")
    records = _json_records(capsys, corpus_path, warm_cache, 6, *packed)
    assert max(len(record["examples"]) for record in records) > 1
    for record in records:
        assert len(record["cls_positions"]) == 4 and len(record["input_ids"]) == 64
        ends = 0
        for example in record["examples"]:
            start, end = example["offset"], example["offset"] + example["length"]
            assert start == ends and record["tokens"][start] == "[CLS]" and record["tokens"][end - 1] == "[SEP]"
            assert record["tokens"][start:end].count("[SEP]") == 2 and set(record["segment_ids"][start:end]) == {example["slot"] + 1}
            assert record["position_ids"][start:end] == list(range(example["length"]))
            assert record["next_sentence_labels"][example["slot"]] == example["next_sentence_label"]
            ends = end
        assert sum(record["attention_mask"]) == ends
    code, out, err = _run(capsys, "inspect-data", *_smoke_args(corpus_path, warm_cache, *packed), "--num", "6")
    assert code == 0, err
    lines = out.splitlines()
    assert sum(line.startswith("#") for line in lines) == 6
    example_lines = [line for line in lines if line.startswith("  [")]
    assert len(example_lines) == sum(len(r["examples"]) for r in records)
    assert all(("IsNext" in line) != ("NotNext" in line) and "A: doc" in line for line in example_lines)


def test_inspect_data_eval_split(capsys: pytest.CaptureFixture[str], corpus_path: Path, warm_cache: Path) -> None:
    records = _json_records(capsys, corpus_path, warm_cache, 2, "--split", "eval")
    for record in records:
        assert BATCH_KEYS <= set(record) and "tokens" in record
        assert record["example_weights"] == [1.0]  # the rows that pad the last batch are not shown
    code, out, err = _run(capsys, "inspect-data", *_smoke_args(corpus_path, warm_cache, "data.eval_fraction=0"), "--split", "eval")
    assert code == EXIT_BAD_INPUT and out == ""
    assert err.startswith("error:") and "--split train" in err


def test_inspect_data_mlm_only_one_document(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    corpus = tmp_path / "one.txt"
    corpus.write_text(
        "The first sentence of the only document. A second one follows it. "
        "Then a third, which is longer than the others, and a fourth. The end.\n",
        encoding="utf-8",
    )
    cache = tmp_path / "cache"
    records = _json_records(capsys, corpus, cache, 3, "train.objectives=[mlm]", "data.eval_fraction=0")
    for record in records:
        assert set(record) == BATCH_KEYS | PROVENANCE_KEYS
        (example,) = record["examples"]
        assert set(example) == EXAMPLE_KEYS - {"doc_b", "sentences_b"}
        assert record["tokens"].count("[SEP]") == 1
        assert record["tokens"][0] == "[CLS]"
        assert record["token_type_ids"] == [0] * 64
        assert example["doc_a"] == 0
    # The default eval split would hold out the only document: a clear error, not an NSP one.
    code, out, err = _run(capsys, "inspect-data", *_smoke_args(corpus, cache, "train.objectives=[mlm]"), "--num", "1")
    assert code == EXIT_BAD_INPUT
    assert "data.eval_fraction" in err and "NSP" not in err


# ---------------------------------------------------------------------------------------------
# bench-data


def test_bench_data_json(capsys: pytest.CaptureFixture[str], corpus_path: Path, corpus_lines: list[str], warm_cache: Path) -> None:
    code, out, err = _run(capsys, "bench-data", *_smoke_args(corpus_path, warm_cache), "--seconds", "0.2", "--json")
    assert code == 0, err
    (line,) = out.splitlines()
    result = json.loads(line)
    assert result["tokens_per_second"] > 0
    assert 0 < result["real_tokens_per_second"] <= result["tokens_per_second"]
    assert 0 <= result["padding_fraction"] < 1
    assert result["batches"] >= 20
    assert result["documents"] == len(corpus_lines)
    assert result["batch_size"] == 8 and result["max_seq_len"] == 64
    assert result["corpus_tokens"] > 0
    assert result["prepare_cold_seconds"] > 0 and result["open_warm_to_first_batch_seconds"] > 0
    assert result["examples_per_epoch"] > 0 and Path(result["prepared_dir"], "manifest.json").is_file()
    assert result["packing_efficiency"] == pytest.approx(1 - result["padding_fraction"], abs=2e-4)
    assert result["examples_per_batch"] == 8 and result["packing"] is False
    packed = ("data.packing=true", "model.impl=fast", "data.max_seq_len=128")
    code, out, err = _run(capsys, "bench-data", *_smoke_args(corpus_path, warm_cache, *packed), "--seconds", "0.1", "--warm-only", "--json")
    assert code == 0, err
    packed_result = json.loads(out)
    assert packed_result["packing"] is True and packed_result["examples_per_batch"] > 8
    assert packed_result["packing_efficiency"] >= 0.9 > result["packing_efficiency"]


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, one line, nothing written


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


BAD_CORPORA = {
    "missing": (lambda d: d / "missing.txt", ["does not exist", "data.path"]),
    "directory": (lambda d: (d / "texts").mkdir() or d / "texts", ["directory"]),
    "empty": (lambda d: _write(d / "empty.txt", b""), ["empty"]),
    "binary": (lambda d: _write(d / "weights.bin", b"\x00\x01\x02binary\x00" * 50), ["binary"]),
    "invalid_utf8": (lambda d: _write(d / "latin1.txt", b"Caf\xe9 society.\n"), ["UTF-8", "byte offset 3"]),
    "glob_nothing": (lambda d: d / "*.nothing", ["matches no file"]),
}


def _assert_one_line_error(code: int, out: str, err: str, words: list[str]) -> None:
    assert code == EXIT_BAD_INPUT
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    for word in words:
        assert word in err


@pytest.mark.parametrize("verb", ["inspect-data", "bench-data"])
@pytest.mark.parametrize("case", list(BAD_CORPORA))
def test_bad_corpus(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, verb: str
) -> None:
    make, words = BAD_CORPORA[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    corpus = make(inputs)
    before = sorted(p.name for p in inputs.iterdir())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cache = tmp_path / "cache"
    code, out, err = _run(capsys, verb, *_smoke_args(corpus, cache))
    _assert_one_line_error(code, out, err, words)
    assert not cache.exists() or not any(cache.iterdir())
    assert not any(cwd.iterdir())
    assert sorted(p.name for p in inputs.iterdir()) == before


TOO_SMALL_FOR_NSP = {
    "one_line": "One sentence here. Another one there. And a third!\n",
    "two_single_sentences": "Just one sentence.\nAnother single sentence.\n",
}


@pytest.mark.parametrize("case", list(TOO_SMALL_FOR_NSP))
@pytest.mark.parametrize("eval_fraction", ["0.05", "0"])
def test_corpus_too_small_for_nsp(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, eval_fraction: str
) -> None:
    corpus = tmp_path / "small.txt"
    corpus.write_text(TOO_SMALL_FOR_NSP[case], encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cache = tmp_path / "cache"
    code, out, err = _run(capsys, "inspect-data", *_smoke_args(corpus, cache, f"data.eval_fraction={eval_fraction}"))
    # With an eval split the training split is empty; without one, NSP itself is impossible.
    _assert_one_line_error(code, out, err, ["data.eval_fraction"] if eval_fraction != "0" else ["NSP", "train.objectives=[mlm]"])
    assert not any(cwd.iterdir())
    # The corpus itself is valid, so its tokenizer and tokens may be cached, but no temp files are left.
    leftovers = [p for p in cache.rglob("*") if p.name.startswith(".")] if cache.exists() else []
    assert leftovers == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["data.max_seq_len=1024"], ["data.max_seq_len", "512"]),
        (["data.max_len=64"], ["data.max_len", "max_seq_len"]),
        (["train.steps=abc"], ["train.steps", "integer"]),
        (["masking.mask_prob=1.5"], ["masking.mask_prob"]),
        (["train.steps"], ["section.key=value"]),
        (["tokenizer.vocab_size=true"], ["tokenizer.vocab_size"]),
        (["--num", "many"], ["--num", "many"]),
        (["--split", "test"], ["--split"]),
        (["--no-such-flag"], ["--no-such-flag"]),
    ],
)
def test_bad_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus_path: Path, args: list[str], words: list[str]
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cache = tmp_path / "cache"
    code, out, err = _run(capsys, "inspect-data", *_smoke_args(corpus_path, cache), *args)
    _assert_one_line_error(code, out, err, words)
    assert not cache.exists()
    assert not any(cwd.iterdir())


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, err = _run(capsys, "bench-data", "--config", str(missing))
    _assert_one_line_error(code, out, err, [str(missing), "--config"])


@pytest.mark.parametrize("argv", [["train-everything"], [], ["--config", SMOKE]])
def test_unknown_or_missing_verb(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = _run(capsys, *argv)
    _assert_one_line_error(code, out, err, ["bert-flax", "--help"])
    if argv[:1] == ["train-everything"]:
        assert "train-everything" in err and "inspect-data" in err


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "inspect-data" in out and "bench-data" in out


@pytest.mark.parametrize("position", ["before_verb", "after_verb"])
def test_debug_reraises(tmp_path: Path, position: str) -> None:
    missing = tmp_path / "missing.txt"
    args = _smoke_args(missing, tmp_path / "cache")
    argv = ["--debug", "inspect-data", *args] if position == "before_verb" else ["inspect-data", "--debug", *args]
    with pytest.raises(UserError, match="does not exist"):
        main(argv)


# ---------------------------------------------------------------------------------------------
# Real processes: exit codes and stderr


def _subprocess(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    env = dict(os.environ, BERT_FLAX_CACHE=str(tmp_path / "env_cache"), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, "-m", "bert_flax.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert not any(cwd.iterdir())
    assert not (tmp_path / "env_cache").exists()
    return result


def test_subprocess_bad_corpus_exit_code(tmp_path: Path) -> None:
    corpus = _write(tmp_path / "binary.txt", b"\x00" * 100)
    result = _subprocess(tmp_path, "inspect-data", *_smoke_args(corpus, tmp_path / "cache"), "--num", "2")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "binary" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cache").exists()


def test_subprocess_usage_error_exit_code(tmp_path: Path) -> None:
    result = _subprocess(tmp_path, "no-such-verb")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-verb" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_subprocess_debug_shows_traceback(tmp_path: Path) -> None:
    result = _subprocess(tmp_path, "--debug", "inspect-data", "--config", SMOKE, "train.steps=abc")
    assert result.returncode not in (0, 2)
    assert "Traceback" in result.stderr
    assert "UserError" in result.stderr and "train.steps" in result.stderr
