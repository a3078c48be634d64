"""Sequence-classification data: rows from files or `datasets`, chosen columns, the label set, encoding.

Nothing here imports JAX: this is the host side of `bert-flax finetune classify`, testable on its own.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from bert_flax.errors import UserError, first_line
from bert_flax.storage import AnyPath, is_remote, local_copy, to_path, write_file

FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json"}
_SUPPORTED = "a .csv, .tsv, .jsonl or .json file, a `datasets` directory or a `datasets` name"
_INTEGER = re.compile(r"-?[0-9]+")

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ClassificationExamples:
    """Texts (and second texts for sentence pairs) with their labels as strings, in row order."""

    texts: tuple[str, ...]
    text_pairs: tuple[str, ...] | None
    labels: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


# ---------------------------------------------------------------------------------------------
# Reading rows


def read_rows(
    source: str | Path,
    *,
    dataset_config: str | None = None,
    split: str = "train",
    data_files: Sequence[str] | None = None,
) -> list[Row]:
    """Rows of a .csv/.tsv (header row), .jsonl/.json file (local or gs://), or of a `datasets` name or directory.

    An existing file is read by its extension (a gs:// object is first copied to a local temporary file).
    Anything else (or any source with `data_files`) goes to
    `datasets.load_dataset(source, dataset_config, split=split, data_files=data_files)`, e.g.
    `read_rows("csv", data_files=["train.csv"])` or `read_rows("glue", dataset_config="sst2")`.
    """
    if is_remote(source) and data_files is None:
        remote = to_path(source)
        if not remote.is_file():
            raise UserError(f"file {remote} does not exist; pass {_SUPPORTED}")
        return _read_file(local_copy(remote))
    path = Path(source).expanduser()
    if data_files is None and path.is_file():
        return _read_file(path)
    if data_files is None and path.suffix.lower() in FILE_FORMATS:
        raise UserError(f"file {path} does not exist; pass {_SUPPORTED}")
    return _read_dataset(str(source), dataset_config, split, data_files)


def _read_file(path: Path) -> list[Row]:
    file_format = FILE_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise UserError(
            f"cannot tell the format of {path} from its extension {path.suffix or '(none)'!r}; "
            f"supported: {', '.join(FILE_FORMATS)} (or load it with a `datasets` builder and data_files)"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a leading byte-order mark is not data
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not valid UTF-8 (byte offset {err.start}); re-encode it as UTF-8") from None
    if file_format in ("csv", "tsv"):
        return _parse_delimited(text, path, tab_separated=file_format == "tsv")
    if file_format == "json" and text.lstrip().startswith("["):
        return _parse_json_array(text, path)
    return parse_json_lines(text, path)


def _parse_delimited(text: str, path: Path, tab_separated: bool) -> list[Row]:
    """CSV with quoting; TSV without (as GLUE's files are written: a quote inside a text is just a quote)."""
    if tab_separated:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[Row] = []
    try:
        for row in reader:
            if None in row:  # DictReader puts fields beyond the header under the key None
                raise UserError(
                    f"row {len(rows) + 1} of {path} (line {reader.line_num}) has more fields than the header's "
                    f"{len(reader.fieldnames or ())}; "
                    + ("a TSV field cannot contain a tab" if tab_separated else "quote fields that contain commas")
                )
            rows.append(row)
    except csv.Error as err:
        raise UserError(
            f"{path} line {reader.line_num} is not valid {'TSV' if tab_separated else 'CSV'} ({err})"
        ) from None
    return rows


def parse_json_lines(text: str, path: Path) -> list[Row]:
    """One JSON object per non-blank line, or a UserError naming the first bad line."""
    rows: list[Row] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(
                f"line {line_number} of {path} is not valid JSON ({err.msg}); a JSON Lines file holds one object per line"
            ) from None
        if not isinstance(row, dict):
            raise UserError(f"line {line_number} of {path} is a JSON {type(row).__name__}, not an object with columns")
        rows.append(row)
    return rows


def _parse_json_array(text: str, path: Path) -> list[Row]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON (line {err.lineno}: {err.msg})") from None
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"item {index} of the JSON array in {path} is a {type(row).__name__}, not an object")
    return rows


def _read_dataset(name: str, config: str | None, split: str, data_files: Sequence[str] | None) -> list[Row]:
    import datasets  # heavy; only for this source

    try:
        dataset = datasets.load_dataset(
            name, config or None, split=split, data_files=list(data_files) if data_files else None
        )
    except Exception as err:  # datasets raises many types (hub, network, builder, split)
        reason = first_line(err)
        raise UserError(f"cannot load dataset {name!r}, split {split!r} ({reason}); pass {_SUPPORTED}") from None
    return dataset.to_list()


# ---------------------------------------------------------------------------------------------
# Choosing columns


def select_columns(
    rows: Sequence[Row],
    text_column: str,
    text_pair_column: str | None,
    label_column: str,
    source: str,
) -> ClassificationExamples:
    """The text, optional second text and label of every row.

    Every row must have a non-blank text (and second text) and a label: an empty one is a UserError naming
    the first such row (rows counted from 1, after any header), never silently dropped. Integer labels
    (3, "3", 3.0) are stored as "3"; other strings as given, stripped of surrounding whitespace.
    """
    if not rows:
        raise UserError(f"{source} has no rows; pass a file or dataset with at least one example")
    available = list(dict.fromkeys(key for row in rows for key in row if key is not None))
    wanted = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    for role, column in wanted.items():
        if column is not None and column not in available:
            raise UserError(
                f"{source} has no column {column!r} (the {role}); "
                f"set it to one of the available columns: {', '.join(map(repr, available))}"
            )
    texts = _texts(rows, text_column, source)
    text_pairs = _texts(rows, text_pair_column, source) if text_pair_column is not None else None
    labels = _labels(rows, label_column, source)
    return ClassificationExamples(texts=texts, text_pairs=text_pairs, labels=labels, source=source)


def _texts(rows: Sequence[Row], column: str, source: str) -> tuple[str, ...]:
    texts = tuple("" if row.get(column) is None else str(row.get(column)) for row in rows)
    empty_rows = [number for number, text in enumerate(texts, start=1) if not text.strip()]
    if empty_rows:
        raise UserError(
            f"{source}: {len(empty_rows)} row(s) have an empty {column!r} (first: row {empty_rows[0]}, counting "
            "from 1 after any header); fill or remove them"
        )
    return texts


def _labels(rows: Sequence[Row], column: str, source: str) -> tuple[str, ...]:
    labels = []
    for number, row in enumerate(rows, start=1):
        label = label_string(row.get(column))
        if label is None:
            raise UserError(
                f"{source}: row {number} (counting from 1 after any header) has label {row.get(column)!r} in "
                f"column {column!r}; a classification label is a non-empty string or an integer"
            )
        labels.append(label)
    return tuple(labels)


def label_string(value: Any) -> str | None:
    """The stable string form of a label (3, 3.0 and "3" give "3"), or None when it is not a class label."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else None  # 0.37 is a regression target
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


# ---------------------------------------------------------------------------------------------
# The label set


@dataclasses.dataclass(frozen=True)
class LabelSet:
    """The classes, in id order: id i is `names[i]`."""

    names: tuple[str, ...]

    @classmethod
    def from_labels(cls, training_labels: Iterable[str]) -> LabelSet:
        """The distinct training labels, sorted numerically when all are integers, else by code point."""
        distinct = set(training_labels)
        if len(distinct) < 2:
            raise UserError(
                f"the training labels hold {len(distinct)} distinct value(s) {sorted(distinct)}; a classifier "
                "needs at least 2 — check label_column"
            )
        if all(_INTEGER.fullmatch(label) for label in distinct):
            return cls(tuple(sorted(distinct, key=lambda label: (int(label), label))))
        return cls(tuple(sorted(distinct)))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.names)}

    def to_ids(self, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids_N int32, known_N bool): a label not in the set gets id -1 and known False."""
        label2id = self.label2id
        ids_N = np.fromiter((label2id.get(label, -1) for label in labels), dtype=np.int32, count=len(labels))
        return ids_N, ids_N >= 0

    def save(self, path: AnyPath) -> None:
        """Write the labels as JSON (id order), e.g. to RUN_DIR/labels.json."""
        write_file(to_path(path), json.dumps({"labels": list(self.names)}, indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> LabelSet:
        """The label set a classification run saved."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path} does not exist; pass the run directory of a `bert-flax finetune classify` run")
        try:
            names = json.loads(path.read_text(encoding="utf-8"))["labels"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise UserError(
                f"{path} is not a label file ({type(err).__name__}: {err}); rerun the fine-tuning"
            ) from None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise UserError(f"{path}: 'labels' must be a list of strings; rerun the fine-tuning")
        return cls(tuple(names))


def unseen_label_counts(labels: Sequence[str], known_N: np.ndarray) -> dict[str, int]:
    """How often each label outside the label set occurs, most frequent first (for the caller to report)."""
    counts = collections.Counter(label for label, known in zip(labels, known_N) if not known)
    return dict(counts.most_common())


# ---------------------------------------------------------------------------------------------
# Encoding


def encode(
    examples: ClassificationExamples, tokenizer: Any, max_seq_len: int, label_set: LabelSet
) -> tuple[dict[str, np.ndarray], int]:
    """Token ids of the examples padded to `max_seq_len`, and how many examples were truncated.

    Returns int32 arrays `input_ids`, `token_type_ids`, `attention_mask` [N, max_seq_len] and `labels` [N]
    (-1 for a label outside `label_set`). Sentence pairs are truncated longest-first: tokens come off the
    longer text until the pair fits. `tokenizer` is a Hugging Face fast tokenizer.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"encode needs a Hugging Face fast tokenizer, got {type(tokenizer).__name__}")
    is_pair = examples.text_pairs is not None
    shortest = tokenizer.num_special_tokens_to_add(pair=is_pair) + (2 if is_pair else 1)
    if max_seq_len < shortest:
        raise UserError(
            f"max_seq_len {max_seq_len} leaves no room for text: {'a pair' if is_pair else 'one text'} needs at least "
            f"{shortest} tokens with [CLS]/[SEP]; raise data.max_seq_len"
        )
    encoding = tokenizer(
        list(examples.texts),
        list(examples.text_pairs) if is_pair else None,
        padding="max_length",
        truncation="longest_first",
        max_length=max_seq_len,
        return_token_type_ids=True,
        return_attention_mask=True,
        return_tensors="np",
    )
    num_truncated = sum(1 for item in encoding.encodings if item.overflowing)
    labels_N, _ = label_set.to_ids(examples.labels)
    arrays = {
        "input_ids": encoding["input_ids"].astype(np.int32),
        "token_type_ids": encoding["token_type_ids"].astype(np.int32),
        "attention_mask": encoding["attention_mask"].astype(np.int32),
        "labels": labels_N,
    }
    return arrays, num_truncated
