"""Reading SQuAD-format question answering data (v1.1 / v2.0 JSON, or `datasets`-style JSON Lines)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

from bert_flax.errors import UserError
from bert_flax.finetune.classify_data import parse_json_lines

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class QAExample:
    """One question about one context; `answer_starts` are character offsets into `context`.

    An impossible (SQuAD v2) question has no answers. Several answers (dev sets) are all gold answers;
    training uses the first.
    """

    id: str
    question: str
    context: str
    answer_texts: tuple[str, ...]
    answer_starts: tuple[int, ...]
    is_impossible: bool = False


@dataclasses.dataclass
class _Tally:
    """What validation dropped or found wrong, reported once after all examples are read."""

    mismatched_answers: int = 0
    first_mismatched_id: str | None = None
    unanswered: int = 0
    first_unanswered_id: str | None = None
    impossible: int = 0
    first_impossible_id: str | None = None
    dropped_examples: int = 0


def read_squad(path: str | Path, version_2: bool = False) -> list[QAExample]:
    """The examples of a SQuAD JSON file, or of a JSON Lines file with one `datasets`-layout record per line.

    `version_2=False` (SQuAD v1.1) makes impossible questions an error; with `version_2=True` a question
    marked `is_impossible` (or, in JSON Lines, one with no answers) is kept with no answers. Answers whose
    text is not found at their `answer_start` are skipped with one warning.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"QA data file {path} does not exist; pass a SQuAD .json or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"QA data file {path} is not UTF-8 text ({err}); pass a SQuAD .json or .jsonl file") from None
    if not text.strip():
        raise UserError(f"QA data file {path} is empty; pass a SQuAD .json or .jsonl file")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if isinstance(document, dict) and "data" in document:
        return _finish(*_nested_examples(document["data"], str(path)), version_2, str(path))
    if document is not None and not (isinstance(document, dict) and "question" in document):  # one-line JSONL
        raise UserError(f"{path} is JSON but has no 'data' key; pass a SQuAD file ({{'version', 'data': [...]}})")
    return examples_from_records(parse_json_lines(text, path), version_2=version_2, source=str(path))


def examples_from_records(
    records: Iterable[Mapping[str, Any]], version_2: bool = False, source: str = "the dataset"
) -> list[QAExample]:
    """Examples from flat records {id, question, context, answers: {text: [...], answer_start: [...]}}.

    This is the layout of the `datasets` "squad" and "squad_v2" sets, so their rows can be passed as they
    are. A record with no answers is impossible when `version_2` is set (or it says `is_impossible`).
    """
    tally = _Tally()
    examples = []
    for number, record in enumerate(records, start=1):
        where = f"record {number} of {source}"
        _require_keys(record, ("id", "question", "context", "answers"), where)
        answers = record["answers"]
        if not isinstance(answers, Mapping) or "text" not in answers or "answer_start" not in answers:
            raise UserError(f"{where}: 'answers' must be {{'text': [...], 'answer_start': [...]}}; fix the record")
        texts, starts = list(answers["text"]), list(answers["answer_start"])
        if len(texts) != len(starts):
            raise UserError(f"{where}: answers has {len(texts)} texts but {len(starts)} answer_start; fix the record")
        is_impossible = bool(record.get("is_impossible", version_2 and not texts))
        example = _checked_example(
            str(record["id"]), record["question"], record["context"], texts, starts, is_impossible, where, tally
        )
        if example is not None:
            examples.append(example)
    return _finish(examples, tally, version_2, source)


def _nested_examples(articles: Any, source: str) -> tuple[list[QAExample], _Tally]:
    """Examples of SQuAD's nested layout: data → paragraphs → qas → answers."""
    if not isinstance(articles, list):
        raise UserError(f"'data' in {source} must be a list of articles; pass a SQuAD v1.1 or v2.0 file")
    tally = _Tally()
    examples = []
    for article_number, article in enumerate(articles, start=1):
        _require_keys(article, ("paragraphs",), f"article {article_number} of {source}")
        for paragraph_number, paragraph in enumerate(article["paragraphs"], start=1):
            where = f"paragraph {paragraph_number} of article {article_number} in {source}"
            _require_keys(paragraph, ("context", "qas"), where)
            for qa in paragraph["qas"]:
                _require_keys(qa, ("id", "question"), where)
                answers = qa.get("answers", [])
                for answer in answers:
                    _require_keys(answer, ("text", "answer_start"), f"question {qa['id']} in {source}")
                example = _checked_example(
                    str(qa["id"]),
                    qa["question"],
                    paragraph["context"],
                    [answer["text"] for answer in answers],
                    [answer["answer_start"] for answer in answers],
                    bool(qa.get("is_impossible", False)),
                    f"question {qa['id']} in {source}",
                    tally,
                )
                if example is not None:
                    examples.append(example)
    return examples, tally


def _checked_example(
    example_id: str,
    question: Any,
    context: Any,
    texts: list[Any],
    starts: list[Any],
    is_impossible: bool,
    where: str,
    tally: _Tally,
) -> QAExample | None:
    """The example with its answers checked against the context; None when no usable answer is left."""
    if not isinstance(question, str) or not isinstance(context, str):
        raise UserError(f"{where}: 'question' and 'context' must be strings; fix the record")
    if is_impossible:
        tally.impossible += 1
        tally.first_impossible_id = tally.first_impossible_id or example_id
        return QAExample(example_id, question, context, (), (), is_impossible=True)
    if not texts:
        tally.unanswered += 1
        tally.first_unanswered_id = tally.first_unanswered_id or example_id
        return None
    kept_texts, kept_starts = [], []
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or isinstance(start, bool) or not isinstance(start, int):
            raise UserError(f"{where}: an answer needs a string 'text' and an integer 'answer_start'; fix the record")
        if text.strip() and start >= 0 and context[start : start + len(text)] == text:
            kept_texts.append(text)
            kept_starts.append(start)
        else:
            tally.mismatched_answers += 1
            tally.first_mismatched_id = tally.first_mismatched_id or example_id
    if not kept_texts:
        tally.dropped_examples += 1
        return None
    return QAExample(example_id, question, context, tuple(kept_texts), tuple(kept_starts))


def _finish(examples: list[QAExample], tally: _Tally, version_2: bool, source: str) -> list[QAExample]:
    """Raise for what cannot be used, warn once about skipped answers, check ids are unique."""
    if tally.unanswered:
        raise UserError(
            f"{tally.unanswered} question(s) in {source} have no answer (first: {tally.first_unanswered_id}); "
            "v1.1 data needs one, mark it is_impossible for v2"
        )
    if tally.impossible and not version_2:
        raise UserError(
            f"{tally.impossible} question(s) in {source} are impossible (first: {tally.first_impossible_id}); "
            "this is SQuAD v2 data: turn on version_2"
        )
    if tally.mismatched_answers:
        log.warning(
            "skipped %d answer(s) in %s whose text is not at their answer_start (first: question %s); "
            "%d question(s) were left without an answer and dropped",
            tally.mismatched_answers,
            source,
            tally.first_mismatched_id,
            tally.dropped_examples,
        )
    if not examples:
        raise UserError(f"{source} has no usable question (none, or every answer mismatches its context)")
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise UserError(f"question id {example.id} appears twice in {source}; ids must be unique")
        seen.add(example.id)
    return examples


def _require_keys(record: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(record, Mapping):
        raise UserError(f"{where} is not a JSON object; pass a SQuAD v1.1 / v2.0 file")
    missing = [key for key in keys if key not in record]
    if missing:
        raise UserError(f"{where} lacks key(s) {', '.join(missing)}; pass a SQuAD v1.1 / v2.0 file")
