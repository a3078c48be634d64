"""Tests for bert_flax.finetune.classify_data and classify_metrics: rows, columns, labels, encoding, scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bert_flax.errors import UserError
from bert_flax.finetune.classify_data import (
    ClassificationExamples,
    LabelSet,
    encode,
    read_rows,
    select_columns,
    unseen_label_counts,
)
from bert_flax.finetune.classify_metrics import accuracy, classification_report, confusion_matrix, macro_f1
from bert_flax.run.layout import RunDir

CLS, SEP, PAD, HELLO, WORLD = 101, 102, 0, 7592, 2088  # bert-base-uncased vocabulary ids



@pytest.fixture(scope="module")
def tokenizer(minilm_dir: str):
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(minilm_dir)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _examples(texts, labels, text_pairs=None) -> ClassificationExamples:
    pairs = tuple(text_pairs) if text_pairs is not None else None
    return ClassificationExamples(texts=tuple(texts), text_pairs=pairs, labels=tuple(labels), source="test")


# ---------------------------------------------------------------------------------------------
# read_rows: files and `datasets`


def test_read_csv_rows_with_quoted_commas_and_bom(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.csv", '\ufeffsentence,label\n"Good, really good.",pos\nBad.,neg\n\n')
    assert read_rows(path) == [{"sentence": "Good, really good.", "label": "pos"}, {"sentence": "Bad.", "label": "neg"}]


def test_read_tsv_rows_keeps_quotes_as_text(tmp_path: Path) -> None:
    # GLUE's TSVs leave quotes unescaped; CSV quoting would swallow the tab after a leading quote.
    path = _write(tmp_path / "dev.TSV", 'sentence\tlabel\n"quoted" start, comma\t1\nplain\t0\n')
    assert read_rows(str(path)) == [
        {"sentence": '"quoted" start, comma', "label": "1"},
        {"sentence": "plain", "label": "0"},
    ]


def test_read_jsonl_and_json_array_rows(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": 3}, {"text": "b", "label": 10}]
    jsonl = _write(tmp_path / "rows.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n\n")
    assert read_rows(jsonl) == rows
    as_lines = _write(tmp_path / "lines.json", "\n".join(json.dumps(row) for row in rows))
    assert read_rows(as_lines) == rows
    as_array = _write(tmp_path / "array.json", json.dumps(rows, indent=2))
    assert read_rows(as_array) == rows


def test_read_jsonl_bad_line_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "rows.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 2}\n')
    with pytest.raises(UserError, match="line 2 of .*rows.jsonl is not valid JSON"):
        read_rows(path)
    _write(path, '{"text": "a"}\n["not", "an", "object"]\n')
    with pytest.raises(UserError, match="line 2 .* JSON list, not an object"):
        read_rows(path)


def test_read_csv_row_with_too_many_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "rows.csv", "text,label\nfine,1\nnot, quoted,0\n")
    with pytest.raises(UserError, match="row 2 .* more fields than the header's 2; quote fields"):
        read_rows(path)


def test_read_datasets_source(tmp_path: Path, hf_datasets_cache: Path) -> None:
    path = _write(tmp_path / "train.csv", 'sentence,label\n"Hello, world.",3\nSecond.,10\n')
    rows = read_rows("csv", data_files=[str(path)])
    assert rows == [{"sentence": "Hello, world.", "label": 3}, {"sentence": "Second.", "label": 10}]
    # `datasets` reads the label column as integers; they are stored as the same strings a CSV gives.
    examples = select_columns(rows, "sentence", None, "label", "csv")
    assert examples.labels == ("3", "10") == select_columns(read_rows(path), "sentence", None, "label", "f").labels
    assert hf_datasets_cache.is_dir()  # the cache went where the test put it


def test_read_datasets_source_failure_is_a_user_error(tmp_path: Path, hf_datasets_cache: Path) -> None:
    path = _write(tmp_path / "train.csv", "sentence,label\na,1\n")
    with pytest.raises(UserError, match="cannot load dataset 'csv', split 'validation'"):
        read_rows("csv", data_files=[str(path)], split="validation")


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.txt", "sentence,label\na,1\n")
    with pytest.raises(UserError) as info:
        read_rows(path)
    message = str(info.value)
    assert "'.txt'" in message
    for extension in (".csv", ".tsv", ".jsonl", ".json"):
        assert extension in message


def test_missing_file_with_known_extension(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_rows(tmp_path / "absent.csv")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\u00e9,1\n".encode("latin-1"))
    with pytest.raises(UserError, match="not valid UTF-8"):
        read_rows(path)


@pytest.mark.parametrize("name, text", [("empty.csv", ""), ("header.csv", "text,label\n"), ("empty.jsonl", "\n \n")])
def test_empty_file(tmp_path: Path, name: str, text: str) -> None:
    rows = read_rows(_write(tmp_path / name, text))
    assert rows == []
    with pytest.raises(UserError, match="has no rows"):
        select_columns(rows, "text", None, "label", name)


# ---------------------------------------------------------------------------------------------
# select_columns


def test_select_sentence_pairs(tmp_path: Path) -> None:
    path = _write(tmp_path / "mrpc.tsv", "id\tq1\tq2\tis_dup\n1\tHow old?\tWhat age?\t1\n2\tWhere?\tWhen?\t0\n")
    examples = select_columns(read_rows(path), "q1", "q2", "is_dup", str(path))
    assert examples.texts == ("How old?", "Where?")
    assert examples.text_pairs == ("What age?", "When?")
    assert examples.labels == ("1", "0")
    assert len(examples) == 2 and examples.source == str(path)
    single = select_columns(read_rows(path), "q1", None, "is_dup", str(path))
    assert single.text_pairs is None


def test_missing_column_lists_available_columns() -> None:
    rows = [{"sentence": "a", "label": 1, "idx": 0}, {"sentence": "b", "label": 0, "idx": 1, "extra": "x"}]
    for args, missing, role in [
        (("text", None, "label"), "text", "text_column"),
        (("sentence", "sentence2", "label"), "sentence2", "text_pair_column"),
        (("sentence", None, "gold"), "gold", "label_column"),
    ]:
        with pytest.raises(UserError) as info:
            select_columns(rows, *args, source="glue/sst2")
        message = str(info.value)
        assert f"no column '{missing}' (the {role})" in message
        assert "'sentence', 'label', 'idx', 'extra'" in message  # every column, in order of appearance


def test_empty_text_names_the_first_row() -> None:
    rows = [{"t": "fine", "l": "a"}, {"t": "  ", "l": "b"}, {"t": None, "l": "a"}, {"t": "ok", "l": "b"}]
    with pytest.raises(UserError, match=r"2 row\(s\) have an empty 't' \(first: row 2"):
        select_columns(rows, "t", None, "l", "src")
    pair_rows = [{"t": "x", "p": "y", "l": "a"}, {"t": "x", "p": "", "l": "a"}]
    with pytest.raises(UserError, match=r"1 row\(s\) have an empty 'p' \(first: row 2"):
        select_columns(pair_rows, "t", "p", "l", "src")


def test_label_forms() -> None:
    rows = [{"t": "x", "l": value} for value in (3, "3", 3.0, np.int64(3), " pos ", True)]
    assert select_columns(rows, "t", None, "l", "src").labels == ("3", "3", "3", "3", "pos", "true")
    for bad in (None, "", "  ", 0.37, [1]):
        with pytest.raises(UserError, match="row 2 .* has label"):
            select_columns([{"t": "x", "l": 1}, {"t": "y", "l": bad}], "t", None, "l", "src")


# ---------------------------------------------------------------------------------------------
# LabelSet


def test_integer_labels_sort_numerically() -> None:
    label_set = LabelSet.from_labels(["10", "2", "-1", "2", "1"])
    assert label_set.names == ("-1", "1", "2", "10")  # lexicographic order would be -1, 1, 10, 2
    assert label_set.id2label == {0: "-1", 1: "1", 2: "2", 3: "10"}
    assert label_set.label2id == {"-1": 0, "1": 1, "2": 2, "10": 3}


def test_string_labels_sort_lexicographically() -> None:
    label_set = LabelSet.from_labels(["neutral", "positive", "negative", "10", "2", "Neg"])
    assert label_set.names == ("10", "2", "Neg", "negative", "neutral", "positive")  # one label not an integer
    assert len(label_set) == 6


def test_a_single_training_label_is_rejected() -> None:
    with pytest.raises(UserError, match="1 distinct value"):
        LabelSet.from_labels(["pos", "pos"])


def test_unseen_eval_label_maps_to_minus_one_and_is_counted() -> None:
    label_set = LabelSet.from_labels(["neg", "pos"])
    eval_labels = ["pos", "neutral", "neg", "mixed", "neutral"]
    ids_N, known_N = label_set.to_ids(eval_labels)
    assert ids_N.dtype == np.int32 and known_N.dtype == np.bool_
    assert ids_N.tolist() == [1, -1, 0, -1, -1]
    assert known_N.tolist() == [True, False, True, False, False]
    assert unseen_label_counts(eval_labels, known_N) == {"neutral": 2, "mixed": 1}
    assert unseen_label_counts(["pos"], label_set.to_ids(["pos"])[1]) == {}


def test_label_set_save_and_load(tmp_path: Path) -> None:
    label_set = LabelSet.from_labels(["b", "a", "é"])
    path = tmp_path / RunDir.LABELS
    label_set.save(path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"labels": ["a", "b", "é"]}
    assert LabelSet.load(path) == label_set
    with pytest.raises(UserError, match="does not exist"):
        LabelSet.load(tmp_path / "absent" / RunDir.LABELS)
    _write(path, '{"names": []}')
    with pytest.raises(UserError, match="not a label file"):
        LabelSet.load(path)
    _write(path, '{"labels": [1, 2]}')
    with pytest.raises(UserError, match="list of strings"):
        LabelSet.load(path)


# ---------------------------------------------------------------------------------------------
# encode


def test_encode_single_texts(tokenizer) -> None:
    label_set = LabelSet.from_labels(["0", "1"])
    # Lengths with [CLS]/[SEP]: 4 (fits in 6), 6 (exactly 6: not truncated), 8 (truncated).
    examples = _examples(["hello world", "hello world hello world", "hello " * 6], ["1", "0", "7"])
    arrays, num_truncated = encode(examples, tokenizer, max_seq_len=6, label_set=label_set)
    assert {key: (value.shape, value.dtype) for key, value in arrays.items()} == {
        "input_ids": ((3, 6), np.int32),
        "token_type_ids": ((3, 6), np.int32),
        "attention_mask": ((3, 6), np.int32),
        "labels": ((3,), np.int32),
    }
    assert arrays["input_ids"].tolist() == [
        [CLS, HELLO, WORLD, SEP, PAD, PAD],
        [CLS, HELLO, WORLD, HELLO, WORLD, SEP],
        [CLS, HELLO, HELLO, HELLO, HELLO, SEP],
    ]
    assert arrays["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6, [1] * 6]
    assert arrays["token_type_ids"].tolist() == [[0] * 6] * 3
    assert arrays["labels"].tolist() == [1, 0, -1]  # "7" was never a training label
    assert num_truncated == 1


def test_encode_sentence_pairs_truncate_longest_first(tokenizer) -> None:
    label_set = LabelSet.from_labels(["a", "b"])
    examples = _examples(
        ["hello", "hello hello hello hello", "hello"],
        ["b", "a", "a"],
        text_pairs=["world", "world world", "world world world world world"],
    )
    arrays, num_truncated = encode(examples, tokenizer, max_seq_len=8, label_set=label_set)
    assert arrays["input_ids"].tolist() == [
        [CLS, HELLO, SEP, WORLD, SEP, PAD, PAD, PAD],
        # 4 + 2 words do not fit in 8 - 3 = 5: one comes off the longer first text ...
        [CLS, HELLO, HELLO, HELLO, SEP, WORLD, WORLD, SEP],
        # ... and 1 + 5 words lose one from the longer second text.
        [CLS, HELLO, SEP, WORLD, WORLD, WORLD, WORLD, SEP],
    ]
    assert arrays["token_type_ids"].tolist() == [
        [0, 0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 1, 1, 1],
    ]
    assert arrays["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0, 0], [1] * 8, [1] * 8]
    assert arrays["labels"].tolist() == [1, 0, 0]
    assert num_truncated == 2


def test_encode_rejects_a_length_with_no_room_for_text(tokenizer) -> None:
    label_set = LabelSet.from_labels(["a", "b"])
    with pytest.raises(UserError, match="at least 5 tokens"):
        encode(_examples(["x"], ["a"], text_pairs=["y"]), tokenizer, max_seq_len=4, label_set=label_set)
    with pytest.raises(UserError, match="at least 3 tokens"):
        encode(_examples(["x"], ["a"]), tokenizer, max_seq_len=2, label_set=label_set)
    arrays, _ = encode(_examples(["x"], ["a"]), tokenizer, max_seq_len=3, label_set=label_set)
    assert arrays["input_ids"].shape == (1, 3)


# ---------------------------------------------------------------------------------------------
# metrics

# Three classes; class 2 is never predicted; the last row's label was unseen in training (-1).
LABEL_IDS = np.array([0, 0, 0, 1, 1, 2, 2, -1])
PREDICTED_IDS = np.array([0, 0, 1, 1, 0, 1, 1, 2])


def test_confusion_matrix_by_hand() -> None:
    # true 0: predicted 0, 0, 1 -> [2, 1, 0]; true 1: predicted 1, 0 -> [1, 1, 0]; true 2: predicted 1, 1 -> [0, 2, 0].
    confusion = confusion_matrix(LABEL_IDS, PREDICTED_IDS, num_labels=3)
    assert confusion.dtype == np.int64
    assert confusion.tolist() == [[2, 1, 0], [1, 1, 0], [0, 2, 0]]
    with pytest.raises(ValueError, match=r"predicted ids must lie in \[0, 2\)"):
        confusion_matrix(np.array([0, 1]), np.array([0, 2]), num_labels=2)


def test_accuracy_and_macro_f1_by_hand() -> None:
    # 7 scored rows (the -1 row is left out), 2 + 1 + 0 = 3 right: 3/7.
    assert accuracy(LABEL_IDS, PREDICTED_IDS) == pytest.approx(3 / 7)
    # class 0: P = 2/(2+1+0) = 2/3, R = 2/3, F1 = 2/3.
    # class 1: P = 1/(1+1+2) = 1/4, R = 1/2, F1 = 2 * 1/8 / (3/4) = 1/3.
    # class 2: never predicted, P undefined -> 0, R = 0/2 = 0, F1 = 0.
    # macro F1 = (2/3 + 1/3 + 0) / 3 = 1/3.
    assert macro_f1(LABEL_IDS, PREDICTED_IDS, num_labels=3) == pytest.approx(1 / 3)


def test_perfect_prediction() -> None:
    labels = np.array([0, 1, 2, 1])
    assert accuracy(labels, labels) == 1.0
    assert macro_f1(labels, labels, num_labels=3) == 1.0
    # Averaged over all 4 labels of the label set, the class absent from this eval set counts as F1 0: 3/4.
    assert macro_f1(labels, labels, num_labels=4) == pytest.approx(3 / 4)


def test_nothing_scored_is_nan() -> None:
    labels = np.array([-1, -1])
    assert math.isnan(accuracy(labels, np.array([0, 1])))
    assert math.isnan(macro_f1(labels, np.array([0, 1]), num_labels=2))


def test_classification_report_by_hand() -> None:
    report = classification_report(LABEL_IDS, PREDICTED_IDS, ["neg", "neu", "pos"])
    assert report["accuracy"] == pytest.approx(3 / 7)
    assert report["macro_f1"] == pytest.approx(1 / 3)
    assert report["num_scored"] == 7 and report["num_unseen_labels"] == 1
    assert report["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [0, 2, 0]]
    expected = {
        "neg": (2 / 3, 2 / 3, 2 / 3, 3),
        "neu": (1 / 4, 1 / 2, 1 / 3, 2),
        "pos": (0.0, 0.0, 0.0, 2),
    }
    for name, (precision, recall, f1, support) in expected.items():
        scores = report["per_class"][name]
        assert scores["precision"] == pytest.approx(precision)
        assert scores["recall"] == pytest.approx(recall)
        assert scores["f1"] == pytest.approx(f1)
        assert scores["support"] == support
    json.dumps(report)  # JSON-ready: plain floats, ints and lists
