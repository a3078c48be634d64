"""Rule-based English sentence splitting for building pre-training sentence pairs.

Splitting on every ``.`` breaks "Mr. Smith" and "3.14" apart and misses ``?``/``!``,
which corrupts the sentence pairs used for next-sentence prediction. This module
splits only where a terminator is followed by something that starts a sentence,
and keeps abbreviations and initials intact. It is pure ``re`` so it stays fast
enough to run over a whole corpus on every data build.
"""

from __future__ import annotations

import re

__all__ = ["split_sentences"]

_WHITESPACE = re.compile(r"\s+")

# A candidate boundary: a whole token ending in a run of terminators, then optional
# closing quotes/brackets and an optional dash (Gutenberg texts write an em dash as
# "- ", as in 'omen.- "No word'), then a space and the start of a sentence: optional
# opening quotes/brackets and an uppercase letter or digit. The text is whitespace-
# collapsed first, so exactly one space separates sentences.
_BOUNDARY = re.compile(
    r"""
    (?<!\S)(?P<word>\S*?)          # the token the terminator ends (may contain dots)
    (?P<punct>[.?!]+)
    ["'\u201d\u2019)\]]*           # closing quotes / brackets
    (?:-{1,2}|\u2014)?             # dash used as a sentence-final em dash
    (?=\ ["'\u201c\u2018(\[]*(?P<next>[A-Z\u00c0-\u00d6\u00d8-\u00de0-9]))
    """,
    re.VERBOSE,
)

# Lower-cased, without the final period; internal periods kept ("e.g").
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms messrs dr st prof sr jr rev hon gov gen col capt lt sgt
    vs etc e.g i.e viz cf al ca approx ch vol vols p pp fig figs ed eds
    inc ltd co corp dept mt ft
    """.split()
)
# Ordinary words too ("No. Neither", "thou art. For"), so abbreviations only before a number.
_NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "art"})
# "J." or "J.R." (the final period is not part of the token).
_INITIALS = re.compile(r"(?:[A-Z]\.)*[A-Z]")
_OPENERS = "\"'\u201c\u2018(["


def _is_abbreviation(word: str, next_char: str) -> bool:
    """Whether a period after ``word`` marks an abbreviation rather than a sentence end."""
    word = word.lstrip(_OPENERS)
    lowered = word.lower()
    if lowered in _ABBREVIATIONS or _INITIALS.fullmatch(word):
        return True
    return lowered in _NUMBER_ABBREVIATIONS and next_char.isdigit()


def split_sentences(text: str) -> list[str]:
    """Split one document into sentences with whitespace runs collapsed to single spaces.

    ``" ".join(split_sentences(text)) == " ".join(text.split())`` always holds, so no
    character is lost or invented; text without a sentence boundary is one sentence.
    """
    text = _WHITESPACE.sub(" ", text).strip()
    sentences = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match["punct"] == "." and _is_abbreviation(match["word"], match["next"]):
            continue
        sentences.append(text[start : match.end()])
        start = match.end() + 1  # skip the single separating space
    if start < len(text):
        sentences.append(text[start:])
    return sentences
