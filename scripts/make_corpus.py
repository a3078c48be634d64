"""Write a synthetic English-like corpus of a given size, for benchmarks of `bert-flax prepare`.

    python scripts/make_corpus.py OUT.txt --mb 100 [--seed 0] [--documents line|blank_line] [--shuffled-sentences 2 14]

How it is built: the words of Meditations (data/meditations.txt) with their frequencies form the
vocabulary; every document gets its own seeded draw of 2-40 sentences of 4-30 words each (drawn
from that frequency distribution), first word capitalised, ending in ". ", "? " or "! ". Documents
are one per line (or separated by blank lines), so no two documents are alike and the sentence
splitter and WordPiece see text shaped like the real corpus. Deterministic in --seed.

With `--shuffled-sentences MIN MAX` every document is instead MIN to MAX whole sentences of Meditations
(split by the project's sentence splitter), drawn at random: real sentences in documents of a chosen
length, the corpus issue 24 measured padding on (2 to 14).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

import numpy as np

MEDITATIONS = Path(__file__).resolve().parents[1] / "data" / "meditations.txt"
_BLOCK_DOCUMENTS = 2000


def vocabulary() -> tuple[list[str], np.ndarray]:
    """Words of Meditations and their probabilities."""
    counts = collections.Counter(re.findall(r"[A-Za-z']+", MEDITATIONS.read_text(encoding="utf-8").lower()))
    words = sorted(counts)
    freqs = np.array([counts[w] for w in words], dtype=np.float64)
    return words, freqs / freqs.sum()


def documents(rng: np.random.Generator, words: list[str], probs: np.ndarray, count: int) -> list[str]:
    """`count` new documents."""
    ends = (". ", "? ", "! ")
    out = []
    for num_sentences in rng.integers(2, 41, size=count):
        lengths = rng.integers(4, 31, size=num_sentences)
        ids = rng.choice(len(words), size=int(lengths.sum()), p=probs)
        marks = rng.choice(3, size=num_sentences, p=(0.85, 0.1, 0.05))
        pieces, start = [], 0
        for length, mark in zip(lengths, marks):
            sentence = " ".join(words[i] for i in ids[start : start + length])
            pieces.append(sentence[:1].upper() + sentence[1:] + ends[mark])
            start += length
        out.append("".join(pieces).rstrip())
    return out


def shuffled_sentences(rng: np.random.Generator, sentences: list[str], low: int, high: int, count: int) -> list[str]:
    """`count` documents of `low` to `high` random Meditations sentences each."""
    return [" ".join(sentences[i] for i in rng.integers(0, len(sentences), n)) for n in rng.integers(low, high + 1, count)]


def meditations_sentences() -> list[str]:
    from bert_flax.data.sentences import split_sentences  # the splitter prepare uses

    lines = MEDITATIONS.read_text(encoding="utf-8").splitlines()
    return [sentence for line in lines if line.strip() for sentence in split_sentences(line)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--mb", type=float, required=True, help="size in megabytes (10^6 bytes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--documents", choices=("line", "blank_line"), default="line")
    sentences_help = "documents of MIN-MAX random Meditations sentences instead of random words"
    parser.add_argument("--shuffled-sentences", type=int, nargs=2, metavar=("MIN", "MAX"), help=sentences_help)
    args = parser.parse_args(argv)
    target = int(args.mb * 1e6)
    rng = np.random.default_rng(args.seed)
    if args.shuffled_sentences:
        sentences, (low, high) = meditations_sentences(), args.shuffled_sentences
        make = lambda count: shuffled_sentences(rng, sentences, low, high, count)
    else:
        words, probs = vocabulary()
        make = lambda count: documents(rng, words, probs, count)
    separator = "\n" if args.documents == "line" else "\n\n"
    written = 0
    with args.out.open("w", encoding="utf-8") as f:
        while written < target:
            block = separator.join(make(_BLOCK_DOCUMENTS)) + separator
            block = block[: target - written]
            f.write(block)
            written += len(block.encode("utf-8"))
    print(f"wrote {args.out}: {written / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
