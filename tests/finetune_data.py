"""Small fine-tuning datasets built from the Meditations corpus (or any list of paragraphs).

Topic classification: sentences that mention exactly one of four themes, labelled by it, balanced.
Extractive QA (SQuAD v1.1 layout): 'Which two words start with "W"?' about a paragraph, answered by
the span from W to the next word — found by matching the quoted word in the context.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

THEMES = {
    "death": r"\b(death|die|dies|dying|dead)\b",
    "gods": r"\bgods?\b",
    "nature": r"\bnature\b",
    "reason": r"\breason\b",
}


def sentences(paragraphs: list[str]) -> list[str]:
    split = (s for p in paragraphs for s in re.split(r"(?<=[.!?;:])\s+", p.strip()))
    return [s for s in split if 8 <= len(s.split()) <= 40]


def topic_rows(paragraphs: list[str], seed: int = 0) -> list[dict[str, str]]:
    """Balanced {text, label} rows, shuffled."""
    by_theme: dict[str, list[str]] = {theme: [] for theme in THEMES}
    for sentence in sentences(paragraphs):
        hits = [theme for theme, pattern in THEMES.items() if re.search(pattern, sentence, re.IGNORECASE)]
        if len(hits) == 1:
            by_theme[hits[0]].append(sentence)
    per_theme = min(len(found) for found in by_theme.values())
    rng = random.Random(seed)
    rows = [{"text": s, "label": theme} for theme, found in by_theme.items() for s in rng.sample(found, per_theme)]
    rng.shuffle(rows)
    return rows


def write_topic_csv(rows: list[dict[str, str]], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def pair_questions(paragraphs: list[str], per_paragraph: int = 2, seed: int = 0) -> list[dict]:
    """SQuAD v1.1 articles: 'Which two words start with "W"?' for a word W that occurs once in its
    paragraph; the answer is W and the word after it, a span found by matching the quoted word."""
    rng = random.Random(seed)
    articles = []
    for number, paragraph in enumerate(paragraphs):
        words = list(re.finditer(r"[A-Za-z]+", paragraph))
        unique = [
            i
            for i, w in enumerate(words[:-1])
            if len(w.group()) >= 4 and len(re.findall(rf"\b{w.group()}\b", paragraph, re.I)) == 1
        ]
        if len(paragraph) > 500 or not unique:
            continue
        qas = []
        for index in rng.sample(unique, min(per_paragraph, len(unique))):
            start, end = words[index].start(), words[index + 1].end()
            qas.append(
                {
                    "id": f"p{number}w{index}",
                    "question": f'Which two words start with "{words[index].group()}"?',
                    "answers": [{"text": paragraph[start:end], "answer_start": start}],
                }
            )
        articles.append({"title": f"paragraph {number}", "paragraphs": [{"context": paragraph, "qas": qas}]})
    return articles


def write_squad(articles: list[dict], path: Path) -> Path:
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return path
