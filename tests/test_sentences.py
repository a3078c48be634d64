"""Tests for the rule-based sentence splitter in bert_flax.data.sentences."""

from __future__ import annotations

import re

import pytest

from bert_flax.data.sentences import split_sentences

# Terminal punctuation, optional closing quotes/brackets, optional em-dash-as-hyphen.
SENTENCE_END = re.compile(r"[.?!]+[\"'\u201d\u2019)\]]*(?:-{1,2}|\u2014)?$")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   \n\t ", []),
        ("Is it so? It is.", ["Is it so?", "It is."]),
        ("Stop! Look.", ["Stop!", "Look."]),
        ("Really?! Yes!!", ["Really?!", "Yes!!"]),
        ('He said "No." Then he left.', ['He said "No."', "Then he left."]),
        ("She asked 'why?' Nobody knew.", ["She asked 'why?'", "Nobody knew."]),
        ("(It was late.) We slept.", ["(It was late.)", "We slept."]),
        ("\u201cGo home!\u201d He went.", ["\u201cGo home!\u201d", "He went."]),
        ("It ended. \"Who won?\" she asked.", ["It ended.", '"Who won?" she asked.']),
        ("It ended. (See above.)", ["It ended.", "(See above.)"]),
        ("Mr. Smith went home. He slept.", ["Mr. Smith went home.", "He slept."]),
        ("Ask Dr. Jones and mrs. Lee. They know.", ["Ask Dr. Jones and mrs. Lee.", "They know."]),
        ("Fruit, e.g. Apples, etc. Are good. Yes.", ["Fruit, e.g. Apples, etc. Are good.", "Yes."]),
        ("See Vol. 2, pp. 14 and No. 7. Done.", ["See Vol. 2, pp. 14 and No. 7.", "Done."]),
        ("Was it? No. Never.", ["Was it?", "No.", "Never."]),
        ("So M. Antoninus wrote. J. R. Smith read it.", ["So M. Antoninus wrote.", "J. R. Smith read it."]),
        ("Pi is 3.14 or so. It is 2.5 m. Ok.", ["Pi is 3.14 or so.", "It is 2.5 m.", "Ok."]),
        ("It cost 5. Then 6.", ["It cost 5.", "Then 6."]),
        ("Born in 1990. 2000 came next.", ["Born in 1990.", "2000 came next."]),
        ("Wait... Then it came.", ["Wait...", "Then it came."]),
        ("He paused... and went on.", ["He paused... and went on."]),
        ("it is late. and dark.", ["it is late. and dark."]),
        ("a sentence with no terminal punctuation", ["a sentence with no terminal punctuation"]),
        ("One.  Two \n\n three.  ", ["One.", "Two three."]),
        ("  First line.\nSecond line.\n", ["First line.", "Second line."]),
        ("It is so.- But why?- Because.", ["It is so.-", "But why?-", "Because."]),
        # Snippets of long Meditations paragraphs.
        (
            "To be received with clapping of hands? No. Neither must we value the clapping of tongues.",
            ["To be received with clapping of hands?", "No.", "Neither must we value the clapping of tongues."],
        ),
        (
            "the foot does the foot's work and the hand the hand's. So then neither to a man",
            ["the foot does the foot's work and the hand the hand's.", "So then neither to a man"],
        ),
        (
            "degree mean-spirited- for how small is the difference?- So think it no great thing",
            ["degree mean-spirited- for how small is the difference?-", "So think it no great thing"],
        ),
    ],
)
def test_hand_written_cases(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


# Whole paragraphs copied verbatim from data/meditations.txt.
REAL_PARAGRAPHS = [
    (
        "Hast thou reason? I have.- Why then dost not thou use it? "
        "For if this does its own work, what else dost thou wish?",
        [
            "Hast thou reason?",
            "I have.-",
            "Why then dost not thou use it?",
            "For if this does its own work, what else dost thou wish?",
        ],
    ),
    (
        "From Plato: The man who has an elevated mind and takes a view of all time and of all "
        "substance, dost thou suppose it possible for him to think that human life is anything "
        "great? it is not possible, he said.- Such a man then will think that death also is no "
        "evil.- Certainly not.",
        [
            "From Plato: The man who has an elevated mind and takes a view of all time and of all "
            "substance, dost thou suppose it possible for him to think that human life is anything "
            "great? it is not possible, he said.-",
            "Such a man then will think that death also is no evil.-",
            "Certainly not.",
        ],
    ),
    (
        'When a man kisses his child, said Epictetus, he should whisper to himself, "To-morrow '
        'perchance thou wilt die."- But those are words of bad omen.- "No word is a word of bad '
        'omen," said Epictetus, "which expresses any work of nature; or if it is so, it is also a '
        'word of bad omen to speak of the ears of corn being reaped."',
        [
            'When a man kisses his child, said Epictetus, he should whisper to himself, "To-morrow '
            'perchance thou wilt die."-',
            "But those are words of bad omen.-",
            '"No word is a word of bad omen," said Epictetus, "which expresses any work of nature; '
            'or if it is so, it is also a word of bad omen to speak of the ears of corn being reaped."',
        ],
    ),
    (
        "Me and my children if the gods neglect,  This has its reason too. And again-",
        ["Me and my children if the gods neglect, This has its reason too.", "And again-"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), REAL_PARAGRAPHS)
def test_real_paragraphs(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_real_paragraphs_are_in_corpus(corpus_lines: list[str]) -> None:
    assert len(corpus_lines) == 507
    assert all(text in corpus_lines for text, _ in REAL_PARAGRAPHS)


def test_every_corpus_line_splits_cleanly(corpus_lines: list[str]) -> None:
    for line in corpus_lines:
        sentences = split_sentences(line)
        assert " ".join(sentences) == " ".join(line.split()), line
        assert all(s and s == s.strip() for s in sentences), line
        for sentence in sentences[:-1]:
            assert SENTENCE_END.search(sentence), (sentence, line)


def test_corpus_sentence_count(corpus_lines: list[str]) -> None:
    total = sum(len(split_sentences(line)) for line in corpus_lines)
    assert total > len(corpus_lines)
    if len(corpus_lines) == 507:  # the real Meditations: 1,584 sentences
        assert 1500 <= total <= 6000


def test_long_tokens_without_boundaries_split_in_linear_time() -> None:
    """A 100,000-character token whose periods are not boundaries (only its last one, before "Next")
    is the regex's worst case; a backtracking pattern would take hours on it, this one milliseconds.
    (Speed itself is a benchmark: `bert-flax bench-data`.)"""
    token = "a." * 50_000
    assert split_sentences(f"{token} Next. {token}") == [token, f"Next. {token}"]
