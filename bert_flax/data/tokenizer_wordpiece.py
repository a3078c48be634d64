"""A deterministic WordPiece vocabulary learner.

`tokenizers`' WordPiece trainer breaks ties by hash order, so the same corpus gives a different
vocabulary on every run (seen: 5 runs, 5 vocabularies). A run must be reproducible from its config
and seed, so we learn the vocabulary ourselves: BPE-style merges of the most frequent adjacent
pair, ties broken by the pair's text, with incremental pair counts and a lazy max-heap.
"""

from __future__ import annotations

import collections
import heapq
from typing import Iterable

from tokenizers import normalizers, pre_tokenizers


def _word_counts(documents: Iterable[str], lowercase: bool) -> collections.Counter:
    normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: collections.Counter = collections.Counter()
    for document in documents:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(document)))
    return counts


def _join(left: str, right: str) -> str:
    return left + (right[2:] if right.startswith("##") else right)


def learn_vocab(
    documents: Iterable[str], vocab_size: int, special_tokens: list[str], min_frequency: int = 2, lowercase: bool = True
) -> list[str]:
    """The vocabulary, in id order: special tokens, the alphabet (sorted), then merged pieces."""
    counts = _word_counts(documents, lowercase)
    words = sorted(counts)  # a fixed order makes everything below deterministic
    freqs = [counts[w] for w in words]
    symbols = [[w[0]] + ["##" + c for c in w[1:]] for w in words]
    vocab = list(special_tokens) + sorted({s for word in symbols for s in word} - set(special_tokens))
    known = set(vocab)

    pair_counts: collections.Counter = collections.Counter()
    pair_words: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    for index, word in enumerate(symbols):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freqs[index]
            pair_words[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    while len(vocab) < vocab_size and heap:
        negative_count, pair = heapq.heappop(heap)
        if -negative_count != pair_counts.get(pair, 0):
            continue  # stale entry: the count changed since it was pushed
        if -negative_count < min_frequency:
            break
        merged = _join(*pair)
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
        touched = set()
        for index in pair_words.pop(pair):
            word, freq = symbols[index], freqs[index]
            for old in zip(word, word[1:]):
                pair_counts[old] -= freq
                touched.add(old)
            new_word, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                    new_word.append(merged)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            symbols[index] = new_word
            for new in zip(new_word, new_word[1:]):
                pair_counts[new] += freq
                pair_words[new].add(index)
                touched.add(new)
        pair_counts.pop(pair, None)
        for changed in sorted(touched - {pair}):
            if pair_counts[changed] > 0:
                heapq.heappush(heap, (-pair_counts[changed], changed))
            else:
                pair_counts.pop(changed, None)
    return vocab
