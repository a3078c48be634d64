"""Everything the pre-training loop needs from data, built from a Config in one call."""

from __future__ import annotations

import dataclasses

import numpy as np
from transformers import BertTokenizerFast

from bert_flax.config import Config
from bert_flax.data.corpus import Corpus, cache_root, load_corpus
from bert_flax.data.pipeline import PretrainingStream
from bert_flax.data.sentences import split_sentences
from bert_flax.data.tokenized import TokenizedCorpus, tokenize_corpus
from bert_flax.data.tokenizer import TokenIds, load_tokenizer
from bert_flax.disk import check_writable_dir
from bert_flax.errors import UserError

STREAM_SPLIT = 0


@dataclasses.dataclass
class PretrainingData:
    corpus: Corpus
    tokenizer: BertTokenizerFast
    ids: TokenIds
    tokenized: TokenizedCorpus
    train_documents: np.ndarray  # int64: corpus document indices
    eval_documents: np.ndarray
    train: PretrainingStream
    eval: PretrainingStream | None  # None when data.eval_fraction is 0


def train_eval_split(
    sentence_counts_D: np.ndarray, eval_fraction: float, min_eval: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, eval) document indices: a seeded random `eval_fraction` of the non-empty documents.

    The eval split holds at least `min_eval` documents unless eval_fraction is 0.
    """
    documents = np.flatnonzero(sentence_counts_D > 0)
    if eval_fraction == 0:
        return documents, documents[:0]
    num_eval = max(min_eval, int(round(eval_fraction * len(documents))))
    shuffled = np.random.default_rng([seed, STREAM_SPLIT]).permutation(documents)
    return np.sort(shuffled[num_eval:]), np.sort(shuffled[:num_eval])


def _check_nsp_possible(sentence_counts_D: np.ndarray, documents: np.ndarray, source: str) -> None:
    """NSP needs two training documents to draw NotNext from, and one with two sentences for IsNext."""
    counts = sentence_counts_D[documents]
    if len(documents) < 2:
        raise UserError(
            f"corpus {source}: the training split has {len(documents)} document(s), NSP needs at least 2; "
            "add documents (data.documents=line splits on every line), lower data.eval_fraction, "
            "or train MLM only with train.objectives=[mlm]"
        )
    if not (counts >= 2).any():
        raise UserError(
            f"corpus {source}: no document of the training split has two sentences, so NSP has no IsNext pairs; "
            "use data.documents=blank_line for multi-line documents or train.objectives=[mlm]"
        )


def build_pretraining_data(config: Config) -> PretrainingData:
    """Corpus → train/eval split (checked before anything is cached) → tokenizer → tokens → streams."""
    corpus = load_corpus(config.data)
    sentence_counts_D = np.array([len(split_sentences(document)) for document in corpus.documents])
    nsp = config.train.nsp
    train_docs, eval_docs = train_eval_split(sentence_counts_D, config.data.eval_fraction, 2 if nsp else 1, config.train.seed)
    if len(train_docs) == 0:
        raise UserError(
            f"corpus {corpus.source} has {len(corpus.documents)} document(s), all held out for evaluation "
            f"(data.eval_fraction={config.data.eval_fraction}, at least {2 if nsp else 1}{' with NSP' if nsp else ''}); "
            "add documents (with data.documents=line every line is one), lower data.eval_fraction"
            + (", or train MLM only with train.objectives=[mlm]" if nsp else "")
        )
    if nsp:
        _check_nsp_possible(sentence_counts_D, train_docs, corpus.source)
    cache_dir = cache_root(config.data)
    check_writable_dir(cache_dir, "data.cache_dir", "point data.cache_dir (or $BERT_FLAX_CACHE) at a writable directory")
    tokenizer = load_tokenizer(config.tokenizer, corpus, cache_dir)
    tokenized = tokenize_corpus(corpus, tokenizer, cache_dir)
    ids = TokenIds.from_tokenizer(tokenizer)

    def stream(documents: np.ndarray, batch_size: int) -> PretrainingStream:
        return PretrainingStream(
            tokenized, ids, documents, config.data, config.masking, nsp, config.train.seed, batch_size,
            mlm="mlm" in config.train.objectives,
        )

    train = stream(train_docs, config.train.batch_size)
    train.epoch_instances(0)  # fail now, not at the first batch, when the documents make no examples
    return PretrainingData(
        corpus=corpus,
        tokenizer=tokenizer,
        ids=ids,
        tokenized=tokenized,
        train_documents=train_docs,
        eval_documents=eval_docs,
        train=train,
        eval=stream(eval_docs, config.eval.batch_size) if len(eval_docs) else None,
    )
