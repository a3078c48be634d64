"""Everything the pre-training loop needs from data, built from a Config in one call.

The corpus is prepared once (`bert-flax prepare`, or here when it is missing) and memory-mapped;
opening it reads the manifest and the offsets' headers, not the text.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from transformers import BertTokenizerFast

from bert_flax.config import Config
from bert_flax.data.corpus import cache_root
from bert_flax.data.pipeline import PretrainingStream
from bert_flax.data.prepare import Prepared, ensure_prepared
from bert_flax.data.row_random import RowRandom, Stream, derive_key
from bert_flax.data.token_corpus import TokenizedCorpus
from bert_flax.data.tokenizer import TokenIds, load_tokenizer, tokenizer_label
from bert_flax.disk import check_writable_dir
from bert_flax.errors import UserError


@dataclasses.dataclass
class PretrainingData:
    tokenizer: BertTokenizerFast
    ids: TokenIds
    prepared: Prepared
    in_eval_D: np.ndarray  # bool [D]: documents held out for evaluation
    train: PretrainingStream
    eval: PretrainingStream | None  # None when data.eval_fraction is 0

    @property
    def tokenized(self) -> TokenizedCorpus:
        return self.prepared.tokenized

    @property
    def source(self) -> str:
        return source_name(self.prepared.manifest)


def source_name(manifest: dict) -> str:
    """The corpus' files or dataset, for messages."""
    return ", ".join(str(s.get("path", s.get("dataset"))) for s in manifest["sources"])


def train_eval_split(sentence_counts_D: np.ndarray, eval_fraction: float, min_eval: int, seed: int) -> np.ndarray:
    """bool [D]: a seeded random `eval_fraction` of the non-empty documents, held out for evaluation.

    Each document gets a uniform key from (seed, its index); the lowest keys are held out, so the
    split needs one vectorised pass over per-document counts and no list of either side. The eval
    split holds at least `min_eval` documents unless eval_fraction is 0.
    """
    nonempty_D = sentence_counts_D > 0
    in_eval_D = np.zeros(len(sentence_counts_D), dtype=bool)
    if eval_fraction == 0:
        return in_eval_D
    num_eval = min(max(min_eval, int(round(eval_fraction * nonempty_D.sum()))), int(nonempty_D.sum()))
    key_D = np.where(nonempty_D, RowRandom(derive_key(seed, Stream.SPLIT), np.arange(len(nonempty_D))).random(), 2.0)
    if num_eval:
        in_eval_D[np.argpartition(key_D, num_eval - 1)[:num_eval]] = True
    return in_eval_D


def _check_split(
    sentence_counts_D: np.ndarray, in_train_D: np.ndarray, in_eval_D: np.ndarray, config: Config, source: str
) -> None:
    """Training needs documents; NSP needs two to draw NotNext from, and one with two sentences for IsNext."""
    nsp, num_documents = config.train.nsp, int((sentence_counts_D > 0).sum())
    if not in_train_D.any():
        raise UserError(
            f"corpus {source} has {num_documents} document(s), all held out for evaluation "
            f"(data.eval_fraction={config.data.eval_fraction}, at least {2 if nsp else 1}{' with NSP' if nsp else ''}); "
            "add documents (with data.documents=line every line is one), lower data.eval_fraction"
            + (", or train MLM only with train.objectives=[mlm]" if nsp else "")
        )
    if not nsp:
        return
    if in_train_D.sum() < 2:
        raise UserError(
            f"corpus {source}: the training split has {int(in_train_D.sum())} document(s), NSP needs at least 2; "
            "add documents (data.documents=line splits on every line), lower data.eval_fraction, "
            "or train MLM only with train.objectives=[mlm]"
        )
    if config.data.pairing == "sentences" and in_eval_D.any() and not (sentence_counts_D[in_eval_D] >= 2).any():
        raise UserError(
            f"corpus {source}: no held-out document has two sentences, so data.pairing=sentences makes no eval "
            "examples; raise data.eval_fraction, use data.pairing=segments, or data.documents=blank_line"
        )
    if not (sentence_counts_D[in_train_D] >= 2).any():
        raise UserError(
            f"corpus {source}: no document of the training split has two sentences, so NSP has no IsNext pairs; "
            "use data.documents=blank_line for multi-line documents or train.objectives=[mlm]"
        )


def build_pretraining_data(config: Config, progress: bool = True) -> PretrainingData:
    """Tokenizer → prepared corpus (built if missing) → train/eval split (checked) → streams."""
    cache_dir = cache_root(config.data)
    check_writable_dir(cache_dir, "data.cache_dir", "point data.cache_dir (or $BERT_FLAX_CACHE) at a writable directory")
    tokenizer = load_tokenizer(config.tokenizer, config.data, cache_dir)
    prepared = ensure_prepared(config.data, tokenizer.backend_tokenizer, tokenizer_label(config.tokenizer), progress)
    sentence_counts_D = prepared.tokenized.sentence_counts()
    nsp = config.train.nsp
    in_eval_D = train_eval_split(sentence_counts_D, config.data.eval_fraction, 2 if nsp else 1, config.train.seed)
    in_train_D = (sentence_counts_D > 0) & ~in_eval_D
    ids = TokenIds.from_tokenizer(tokenizer)
    _check_split(sentence_counts_D, in_train_D, in_eval_D, config, source_name(prepared.manifest))

    def stream(in_split_D: np.ndarray, batch_size: int, key: Stream) -> PretrainingStream:
        return PretrainingStream(
            prepared.tokenized, ids, in_split_D, config.data, config.masking, nsp, config.train.seed, batch_size,
            mlm="mlm" in config.train.objectives, stream=key,
        )

    train = stream(in_train_D, config.train.batch_size, Stream.PAIRING)
    evaluation = stream(in_eval_D, config.eval.batch_size, Stream.EVAL) if in_eval_D.any() else None
    return PretrainingData(tokenizer, ids, prepared, in_eval_D, train, evaluation)
