"""Extractive QA without a model: reading SQuAD data, windows and labels, logits back to text, metrics.

Expected values are worked out by hand in the comments. Contexts made of number words ("one two ...")
tokenize to one bert-base-uncased token per word, so token positions can be counted on fingers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from bert_flax.config import FinetuneConfig
from bert_flax.errors import UserError
from bert_flax.finetune.qa_features import NOT_CONTEXT, QAFeatures, make_features, window_count
from bert_flax.finetune.qa_postprocess import best_answers, span_predictions
from bert_flax.finetune.squad import QAExample, examples_from_records, read_squad
from bert_flax.finetune.squad_metrics import exact_match, f1, normalize_answer, squad_scores

NUMBERS = (
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
)


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: str):
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(minilm_dir)


def answerable(example_id: str, question: str, context: str, answer: str) -> QAExample:
    return QAExample(example_id, question, context, (answer,), (context.index(answer),))


def write_squad(path: Path, qas_by_context: dict[str, list[dict]]) -> Path:
    paragraphs = [{"context": context, "qas": qas} for context, qas in qas_by_context.items()]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


# ---------------------------------------------------------------------------------------------- reading


def test_read_squad_v1_keeps_every_gold_answer(tmp_path: Path) -> None:
    context = "Marcus Aurelius was Roman emperor from 161 to 180 AD."
    path = write_squad(
        tmp_path / "v1.json",
        {
            context: [
                {"id": "q1", "question": "When?", "answers": [{"text": "161 to 180", "answer_start": 39}] * 2},
                {"id": "q2", "question": "Who?", "answers": [{"text": "Marcus Aurelius", "answer_start": 0}]},
            ]
        },
    )
    examples = read_squad(path)
    assert examples == [
        QAExample("q1", "When?", context, ("161 to 180", "161 to 180"), (39, 39), False),
        QAExample("q2", "Who?", context, ("Marcus Aurelius",), (0,), False),
    ]


def test_read_squad_v2_impossible_needs_version_2(tmp_path: Path) -> None:
    qas = [
        {"id": "ok", "question": "Who?", "answers": [{"text": "Marcus", "answer_start": 0}], "is_impossible": False},
        {"id": "no", "question": "Why?", "answers": [], "is_impossible": True},
    ]
    path = write_squad(tmp_path / "v2.json", {"Marcus wrote.": qas})
    with pytest.raises(UserError, match=r"1 question\(s\) .* impossible \(first: no\).*version_2"):
        read_squad(path, version_2=False)
    examples = read_squad(path, version_2=True)
    assert [(e.id, e.is_impossible, e.answer_texts) for e in examples] == [("ok", False, ("Marcus",)), ("no", True, ())]


def test_v1_question_without_answer_is_an_error(tmp_path: Path) -> None:
    qas = [
        {"id": "a", "question": "Who?", "answers": [{"text": "Marcus", "answer_start": 0}]},
        {"id": "b", "question": "Why?", "answers": []},
        {"id": "c", "question": "How?", "answers": []},
    ]
    path = write_squad(tmp_path / "v1.json", {"Marcus wrote.": qas})
    # Not marked is_impossible, so it is broken v1.1 data even when version_2 is on.
    for version_2 in (False, True):
        with pytest.raises(UserError, match=r"2 question\(s\) .* no answer \(first: b\); v1.1 data needs one"):
            read_squad(path, version_2=version_2)


def test_mismatched_answers_are_skipped_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    context = "Marcus Aurelius was Roman emperor from 161 to 180 AD."
    qas = [
        {"id": "good", "question": "Who?", "answers": [{"text": "Marcus", "answer_start": 0}]},
        # one of two answers is off by one character: the question keeps the other
        {
            "id": "half",
            "question": "When?",
            "answers": [{"text": "161 to 180", "answer_start": 40}, {"text": "161 to 180", "answer_start": 39}],
        },
        # its only answer is not in the context at 20: the question is dropped
        {"id": "bad", "question": "What?", "answers": [{"text": "king", "answer_start": 20}]},
    ]
    path = write_squad(tmp_path / "v1.json", {context: qas})
    with caplog.at_level(logging.WARNING, logger="bert_flax.finetune.squad"):
        examples = read_squad(path)
    assert [(e.id, e.answer_starts) for e in examples] == [("good", (0,)), ("half", (39,))]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "skipped 2 answer(s)" in warnings[0] and "first: question half" in warnings[0]


def test_all_answers_mismatched_is_an_error(tmp_path: Path) -> None:
    qas = [{"id": "bad", "question": "Who?", "answers": [{"text": "Marcus", "answer_start": 3}]}]
    with pytest.raises(UserError, match="no usable question"):
        read_squad(write_squad(tmp_path / "v1.json", {"Marcus wrote.": qas}))


def test_json_lines_and_datasets_records(tmp_path: Path) -> None:
    records = [
        {
            "id": "1",
            "question": "Who?",
            "context": "Marcus wrote.",
            "answers": {"text": ["Marcus"], "answer_start": [0]},
        },
        {"id": "2", "question": "Why?", "context": "Marcus wrote.", "answers": {"text": [], "answer_start": []}},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    expected = [
        QAExample("1", "Who?", "Marcus wrote.", ("Marcus",), (0,), False),
        QAExample("2", "Why?", "Marcus wrote.", (), (), True),  # the squad_v2 layout: no answers = impossible
    ]
    assert read_squad(path, version_2=True) == expected
    assert examples_from_records(records, version_2=True) == expected
    with pytest.raises(UserError, match=r"no answer \(first: 2\)"):
        examples_from_records(records, version_2=False)
    one_line = tmp_path / "one.jsonl"
    one_line.write_text(json.dumps(records[0]))  # a one-record JSON Lines file is also a JSON document
    assert read_squad(one_line) == expected[:1]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        ("{not json", "is not valid JSON"),
        ('{"version": "1.1"}', "no 'data' key"),
        ('{"data": [{"paragraphs": [{"qas": []}]}]}', "lacks key"),
        ('{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x"}]}]}]}', "lacks key.*question"),
        ('{"id": "1", "question": "q", "context": "c"}', "lacks key.*answers"),
        ('{"id": "1", "question": "q", "context": "c", "answers": ["c"]}', "'answers' must be"),
    ],
)
def test_bad_files_are_user_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_squad(path)


def test_missing_file_and_duplicate_ids_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_squad(tmp_path / "absent.json")
    qas = [{"id": "same", "question": "Who?", "answers": [{"text": "Marcus", "answer_start": 0}]}] * 2
    with pytest.raises(UserError, match="id same appears twice"):
        read_squad(write_squad(tmp_path / "dup.json", {"Marcus wrote.": qas}))


# --------------------------------------------------------------------------------------------- features


def test_answer_cut_by_one_window_is_labelled_in_the_next(tokenizer) -> None:
    # "where is it" = 3 tokens, so a 16-token window holds 16 - 3 - 3 = 10 context tokens; with an
    # overlap (doc_stride) of 3 the windows start at context tokens 0, 7 and 14: 1 + ceil((20-10)/7) = 3.
    # The answer is context tokens 8..10 ("nine ten eleven"): window 0 (tokens 0..9) cuts it after
    # "ten", window 1 (7..16) holds it at positions 5 + (8 - 7) = 6 to 8, window 2 (14..19) misses it.
    example = answerable("q", "where is it", NUMBERS, "nine ten eleven")
    features = make_features([example], tokenizer, max_seq_len=16, doc_stride=3, max_query_len=8)
    assert features.num_features == 3 == window_count(20, 3, 16, 3)
    assert features.start_positions_N.tolist() == [0, 6, 0]
    assert features.end_positions_N.tolist() == [0, 8, 0]
    assert features.example_index_N.tolist() == [0, 0, 0]
    first_word_of_window = [NUMBERS[features.offsets_NxLx2[n, 5, 0] :].split()[0] for n in range(3)]
    assert first_word_of_window == ["one", "eight", "fifteen"]
    # [CLS] + 3 question tokens + [SEP] are not context, nor the closing [SEP] and the padding.
    assert (features.offsets_NxLx2[:, :5] == NOT_CONTEXT).all()
    assert (features.offsets_NxLx2[2, 11:] == NOT_CONTEXT).all()  # window 2 holds 6 tokens: 5..10
    assert (features.offsets_NxLx2[2, 5:11] != NOT_CONTEXT).all()
    for array in (features.input_ids_NxL, features.token_type_ids_NxL, features.attention_mask_NxL):
        assert array.shape == (3, 16) and array.dtype == np.int32
    assert features.offsets_NxLx2.shape == (3, 16, 2) and features.offsets_NxLx2.dtype == np.int32


@pytest.mark.parametrize("max_seq_len, doc_stride", [(16, 0), (16, 3), (20, 5), (14, 6)])
def test_window_count_matches_the_tokenizer(tokenizer, max_seq_len: int, doc_stride: int) -> None:
    for num_words in range(1, 21):
        context = " ".join(NUMBERS.split()[:num_words])
        example = QAExample("q", "where is it", context, (), (), is_impossible=True)
        features = make_features([example], tokenizer, max_seq_len, doc_stride, max_query_len=3)
        assert features.num_features == window_count(num_words, 3, max_seq_len, doc_stride), num_words
        assert features.start_positions_N.tolist() == features.end_positions_N.tolist() == [0] * features.num_features


def test_labels_recover_the_answer_and_questions_are_truncated(tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    emperor = "Marcus Aurelius was Roman emperor from 161 to 180 AD."
    examples = [
        answerable("a", "When did he rule?", emperor, "161 to 180"),
        answerable("b", "Who?", emperor, "Aurelius"),
        answerable("c", "  What dyes the soul?", "The soul becomes dyed with the colour of its thoughts.", "colour"),
    ]
    features = make_features(examples, tokenizer, max_seq_len=24, doc_stride=4, max_query_len=2)
    assert features.example_index_N.tolist() == [0, 1, 2]
    # Tokenizing in chunks of 2 examples gives the same features, example indices counted across chunks.
    monkeypatch.setattr("bert_flax.finetune.qa_features._CHUNK", 2)
    chunked = make_features(examples, tokenizer, max_seq_len=24, doc_stride=4, max_query_len=2)
    for name in vars(features):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(features, name), err_msg=name)
    for n, example in enumerate(examples):
        start, end = features.start_positions_N[n], features.end_positions_N[n]
        offsets_Lx2 = features.offsets_NxLx2[n]
        assert example.context[offsets_Lx2[start, 0] : offsets_Lx2[end, 1]] == example.answer_texts[0]
    # "Aurelius" is three word pieces au ##rel ##ius: the label covers all three (positions 5..7 after
    # [CLS] who ? [SEP] marcus).
    assert (features.start_positions_N[1], features.end_positions_N[1]) == (5, 7)
    # max_query_len=2: "When did he rule?" keeps "when did", "What dyes ..." keeps "what dye" (dyes = dye ##s).
    question_a = tokenizer.convert_ids_to_tokens(features.input_ids_NxL[0, :4].tolist())
    question_c = tokenizer.convert_ids_to_tokens(features.input_ids_NxL[2, :4].tolist())
    assert question_a == ["[CLS]", "when", "did", "[SEP]"]
    assert question_c == ["[CLS]", "what", "dye", "[SEP]"]


def test_answer_edges_inside_a_word_label_the_covering_tokens(tokenizer) -> None:
    # "Aurelius" = au (7..9) ##rel (9..12) ##ius (12..15). An answer "elius was" starts inside ##rel and
    # "Marcus Aur" ends inside ##rel: each label is the token that holds the edge character.
    emperor = "Marcus Aurelius was Roman emperor from 161 to 180 AD."
    examples = [answerable("in", "Who?", emperor, "elius was"), answerable("out", "Who?", emperor, "Marcus Aur")]
    features = make_features(examples, tokenizer, max_seq_len=24, doc_stride=4, max_query_len=2)
    # [CLS] who ? [SEP] marcus(4) au(5) ##rel(6) ##ius(7) was(8)
    assert features.start_positions_N.tolist() == [6, 4]
    assert features.end_positions_N.tolist() == [8, 6]


def test_feature_arguments_are_checked(tokenizer, minilm_dir: str) -> None:
    from transformers import BertTokenizer

    example = answerable("q", "where is it", NUMBERS, "nine")
    # 16 - 8 - 3 = 5 context tokens at least; an overlap of 5 would never advance.
    with pytest.raises(UserError, match="doc_stride 5 must be smaller than .* = 5"):
        make_features([example], tokenizer, max_seq_len=16, doc_stride=5, max_query_len=8)
    with pytest.raises(UserError, match="fast"):
        make_features([example], BertTokenizer.from_pretrained(minilm_dir), 16, 2, 8)


# ------------------------------------------------------------------------------------- post-processing


def perfect_logits(features: QAFeatures) -> tuple[np.ndarray, np.ndarray]:
    """10 at each window's labelled start and end (at [CLS] for windows without the answer), 0 elsewhere."""
    start_NxL = np.zeros(features.input_ids_NxL.shape, np.float32)
    end_NxL = np.zeros(features.input_ids_NxL.shape, np.float32)
    rows = np.arange(features.num_features)
    start_NxL[rows, features.start_positions_N] = 10.0
    end_NxL[rows, features.end_positions_N] = 10.0
    return start_NxL, end_NxL


def test_round_trip_with_perfect_logits_scores_100(tokenizer) -> None:
    examples = [
        answerable("window", "where is it", NUMBERS, "nine ten eleven"),
        answerable("emperor", "When?", "Marcus Aurelius was Roman emperor from 161 to 180 AD.", "161 to 180"),
        answerable(
            "soul", "What?", "The soul becomes dyed with the colour of its thoughts.", "the colour of its thoughts"
        ),
    ]
    features = make_features(examples, tokenizer, max_seq_len=16, doc_stride=3, max_query_len=3)
    assert features.num_features > len(examples)  # the long contexts really are windowed
    predictions = best_answers(examples, features, *perfect_logits(features))
    assert predictions == {"window": "nine ten eleven", "emperor": "161 to 180", "soul": "the colour of its thoughts"}
    assert squad_scores(predictions, examples) == {"exact_match": 100.0, "f1": 100.0, "total": 3.0}


def test_shifted_span_scores_the_hand_computed_f1(tokenizer) -> None:
    examples = [
        answerable("window", "where is it", NUMBERS, "nine ten eleven"),
        answerable("emperor", "When?", "Marcus Aurelius was Roman emperor from 161 to 180 AD.", "161 to 180"),
    ]
    features = make_features(examples, tokenizer, max_seq_len=16, doc_stride=3, max_query_len=3)
    start_NxL, end_NxL = perfect_logits(features)
    window = int(np.flatnonzero((features.example_index_N == 0) & (features.start_positions_N > 0))[0])
    start_NxL[window] = np.roll(start_NxL[window], 1)  # one token later: "ten eleven twelve"
    end_NxL[window] = np.roll(end_NxL[window], 1)
    predictions = best_answers(examples, features, start_NxL, end_NxL)
    assert predictions["window"] == "ten eleven twelve"
    # ten eleven twelve vs nine ten eleven: 2 shared tokens, precision = recall = 2/3, F1 = 2/3.
    # Overall: EM = (0 + 1) / 2 = 50%, F1 = (2/3 + 1) / 2 = 83.33%.
    scores = squad_scores(predictions, examples)
    assert scores["exact_match"] == 50.0
    assert scores["f1"] == pytest.approx(100 * (2 / 3 + 1) / 2)


def test_answer_cut_by_a_window_is_found_whole_in_another(tokenizer) -> None:
    # Logits 10 at "nine" (start) and "eleven" (end) wherever the window holds them. Window 0 holds
    # "nine" but not "eleven": its best span is "nine" alone (10 + 0). Window 1 holds both: 10 + 10 wins.
    example = answerable("q", "where is it", NUMBERS, "nine ten eleven")
    features = make_features([example], tokenizer, max_seq_len=16, doc_stride=3, max_query_len=8)
    start_NxL = np.where(features.offsets_NxLx2[:, :, 0] == NUMBERS.index("nine"), 10.0, 0.0)
    end_NxL = np.where(features.offsets_NxLx2[:, :, 1] == NUMBERS.index("eleven") + 6, 10.0, 0.0)
    assert start_NxL[0].max() == 10.0 and end_NxL[0].max() == 0.0  # window 0 really cuts the answer
    prediction = span_predictions([example], features, start_NxL, end_NxL)["q"]
    assert (prediction.text, prediction.window, prediction.span_score) == ("nine ten eleven", 1, 20.0)
    # Seen alone, window 0 gives the cut answer: the search over windows is what finds it whole.
    window_0 = QAFeatures(**{name: getattr(features, name)[:1] for name in vars(features)})
    assert best_answers([example], window_0, start_NxL[:1], end_NxL[:1])["q"] == "nine"


COLOURS = "red green blue"  # hand-made windows: [CLS] red green blue [SEP]


def colour_features(num_windows: int = 1) -> QAFeatures:
    """`num_windows` windows of one example over COLOURS, each `[CLS] red green blue [SEP]` (L = 5)."""
    offsets_Lx2 = np.array([[-1, -1], [0, 3], [4, 9], [10, 14], [-1, -1]], np.int32)
    zeros_NxL = np.zeros((num_windows, 5), np.int32)
    zeros_N = np.zeros(num_windows, np.int32)
    return QAFeatures(zeros_NxL, zeros_NxL, zeros_NxL, zeros_N, zeros_N, zeros_N, np.stack([offsets_Lx2] * num_windows))


COLOUR_EXAMPLE = QAExample("c", "which?", COLOURS, (), (), is_impossible=True)


def answer(start_L: list[float], end_L: list[float], **options) -> str:
    """The answer for one colour window with these logits."""
    features = colour_features()
    settings = FinetuneConfig(**options)
    return best_answers([COLOUR_EXAMPLE], features, np.array([start_L]), np.array([end_L]), settings)["c"]


def test_null_threshold_both_ways() -> None:
    # null = start[CLS] + end[CLS] = 3 + 2 = 5; best span "red green" = 1 + 1 = 2; null - best = 3.
    start_L, end_L = [3, 1, 0, 0, 0], [2, 0, 1, 0, 0]
    assert answer(start_L, end_L, version_2=True, null_threshold=2.9) == ""  # 3 > 2.9: no answer
    assert answer(start_L, end_L, version_2=True, null_threshold=3.0) == "red green"  # 3 > 3 is false: answer
    assert answer(start_L, end_L, version_2=True, null_threshold=-5.0) == ""
    assert answer(start_L, end_L, version_2=False, null_threshold=-5.0) == "red green"  # v1 has no null


def test_null_score_is_the_lowest_over_windows() -> None:
    # Window 0: null 5, window 1: null 1; both best spans "red green" score 2. min null 1 - 2 = -1 <= 0:
    # answer. (With the highest null, 5 - 2 = 3 > 0 would give "".)
    start_NxL = np.array([[3, 1, 0, 0, 0], [0.5, 1, 0, 0, 0]])
    end_NxL = np.array([[2, 0, 1, 0, 0], [0.5, 0, 1, 0, 0]])
    settings = FinetuneConfig(version_2=True)
    prediction = span_predictions([COLOUR_EXAMPLE], colour_features(2), start_NxL, end_NxL, settings)["c"]
    assert (prediction.text, prediction.null_score, prediction.span_score) == ("red green", 1.0, 2.0)


def test_ties_prefer_earlier_window_then_earlier_start_then_shorter_span() -> None:
    # Within a window, (red, green), (red, blue), (green, green), (green, blue) all score 1 + 1 = 2:
    # the earliest start (red), then the shorter span (end green) wins.
    assert answer([0, 1, 1, 0, 0], [0, 0, 1, 1, 0]) == "red green"
    # Across windows: window 0's best is "blue" (2), window 1's "red" (2): equal, so window 0.
    start_NxL = np.array([[0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    end_NxL = np.array([[0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    assert best_answers([COLOUR_EXAMPLE], colour_features(2), start_NxL, end_NxL)["c"] == "blue"
    assert best_answers([COLOUR_EXAMPLE], colour_features(2), start_NxL[::-1], end_NxL[::-1])["c"] == "red"


def test_max_answer_len_and_n_best() -> None:
    # "red green blue" = 5 + 5 = 10 is 3 tokens; with at most 2 the best is (red, green) = 5 + 1 = 6,
    # above (green, blue) = 0 + 5, (blue, blue) = 0 + 5 and (red, red) = 5 + 0.
    start_L, end_L = [0, 5, 0, 0, 0], [0, 0, 1, 5, 0]
    assert answer(start_L, end_L, max_answer_len=3) == "red green blue"
    assert answer(start_L, end_L, max_answer_len=2) == "red green"
    assert answer(start_L, end_L, max_answer_len=1) == "red"  # red, green, blue alone score 5, 1, 5: red first
    # n_best=1 pairs only the top start (blue, 5) with the top end (green, 6): end before start, no answer.
    # n_best=2 adds the start red (4) and the end red (0, first of the zero ties): (red, green) = 10.
    start_L, end_L = [0, 4, 0, 5, 0], [0, 0, 6, 0, 0]
    assert answer(start_L, end_L, n_best=1) == ""
    assert answer(start_L, end_L, n_best=2) == "red green"
    # Equal logits enter the top n_best in token order: red (not green) is the one start kept.
    assert answer([0, 5, 5, 0, 0], [0, 0, 0, 5, 0], n_best=1) == "red green blue"


def test_non_context_tokens_are_never_in_a_span() -> None:
    # [CLS] and [SEP] have the highest logits but are not context: the best context span is green (1 + 1).
    assert answer([9, 0, 1, 0, 9], [9, 0, 1, 0, 9]) == "green"


# ----------------------------------------------------------------------------------------------- metrics


def test_normalisation() -> None:
    # lowercase, punctuation deleted (not spaced: "brown-fox" -> "brownfox"), articles dropped, spaces collapsed
    assert normalize_answer("  The  Quick, brown-fox!\t\n") == "quick brownfox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre, another anthem") == "theatre another anthem"  # articles as whole words only
    assert normalize_answer("Don't.") == "dont"
    assert normalize_answer("The") == ""


def test_exact_match_and_f1() -> None:
    assert exact_match("The Eiffel   Tower.", ["eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["eiffel tower"]) == 0.0
    assert exact_match("Paris", ["France", "paris!"]) == 1.0  # best over golds
    # pred {big, red, dog} vs gold {red, dog, barked}: 2 shared, P = R = 2/3, F1 = 2/3.
    assert f1("the big red dog", ["a red dog barked"]) == pytest.approx(2 / 3)
    # vs {big, dog}: 2 shared, P = 2/3, R = 1, F1 = 2 * (2/3) / (5/3) = 0.8: the max over golds.
    assert f1("the big red dog", ["a red dog barked", "big dog"]) == pytest.approx(0.8)
    # repeated words count once per match: 1 shared, P = 1/3, R = 1, F1 = 0.5.
    assert f1("dog dog dog", ["dog"]) == pytest.approx(0.5)
    # {dog, dog, cat} vs {dog, dog}: 2 shared, P = 2/3, R = 1, F1 = 0.8 (sets would give 1 shared, 0.4).
    assert f1("dog dog cat", ["dog dog"]) == pytest.approx(0.8)
    assert f1("cat", ["dog"]) == 0.0


def test_impossible_questions_score_only_empty_predictions() -> None:
    assert exact_match("", []) == f1("", []) == 1.0
    assert exact_match("The.", []) == f1("The.", []) == 1.0  # normalises to ""
    assert exact_match("dog", []) == f1("dog", []) == 0.0
    assert exact_match("", ["dog"]) == f1("", ["dog"]) == 0.0
    # A gold that normalises to "" is dropped (official v2 script), so it does not make "" right.
    assert exact_match("", ["The", "dog"]) == f1("", ["The", "dog"]) == 0.0


def test_squad_scores_with_has_and_no_answer_breakdown() -> None:
    examples = [
        QAExample("a", "q", "the red dog", ("red dog",), (4,)),  # "red dog": EM 1, F1 1
        QAExample("b", "q", "a big red dog", ("big red dog",), (2,)),  # "red": P 1, R 1/3, F1 0.5; EM 0
        QAExample("c", "q", "x", (), (), is_impossible=True),  # "": EM 1, F1 1
        QAExample("d", "q", "x", (), (), is_impossible=True),  # "dog": 0, 0
    ]
    predictions = {"a": "red dog", "b": "red", "c": "", "d": "dog"}
    assert squad_scores(predictions, examples) == pytest.approx(
        {
            "exact_match": 50.0,  # 2 of 4
            "f1": 62.5,  # (1 + 0.5 + 1 + 0) / 4
            "total": 4.0,
            "has_answer_exact_match": 50.0,
            "has_answer_f1": 75.0,  # (1 + 0.5) / 2
            "has_answer_total": 2.0,
            "no_answer_exact_match": 50.0,
            "no_answer_f1": 50.0,
            "no_answer_total": 2.0,
        }
    )
    with pytest.raises(UserError, match=r"1 question\(s\) have no prediction \(first: d\)"):
        squad_scores({"a": "", "b": "", "c": ""}, examples)
