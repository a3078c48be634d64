"""The WordPiece tokenizer: an HF name or directory, or one trained on a sample of the corpus (cached)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Iterable

import numpy as np
from transformers import BertTokenizerFast

from bert_flax.config import DataConfig, TokenizerConfig
from bert_flax.data.reader import describe
from bert_flax.data.tokenizer_sample import sample_documents, sample_key
from bert_flax.data.tokenizer_wordpiece import learn_vocab
from bert_flax.disk import write_dir
from bert_flax.errors import UserError
from bert_flax.hub import load_local_or_hub

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_UNUSED = re.compile(r"^\[unused\d+\]$")


@dataclasses.dataclass(frozen=True)
class TokenIds:
    """What the pipeline needs from a tokenizer, as plain ints and NumPy lookup tables."""

    cls: int
    sep: int
    pad: int
    mask: int
    vocab_size: int
    random_ids: np.ndarray  # int32 [R]: ids a masked token may be replaced by (no special/[unusedN])
    is_continuation_V: np.ndarray  # bool [V]: "##" pieces, which continue the previous word

    @classmethod
    def from_tokenizer(cls, tokenizer: BertTokenizerFast) -> "TokenIds":
        vocab = tokenizer.get_vocab()
        vocab_size = max(len(tokenizer), max(vocab.values()) + 1)
        tokens = np.array([""] * vocab_size, dtype=object)
        for token, index in vocab.items():
            tokens[index] = token
        special = set(tokenizer.all_special_ids)
        random_ids = [i for i, t in enumerate(tokens) if i not in special and t and not _UNUSED.match(t)]
        return cls(
            cls=tokenizer.cls_token_id,
            sep=tokenizer.sep_token_id,
            pad=tokenizer.pad_token_id,
            mask=tokenizer.mask_token_id,
            vocab_size=vocab_size,
            random_ids=np.asarray(random_ids, dtype=np.int32),
            is_continuation_V=np.array([t.startswith("##") for t in tokens], dtype=bool),
        )


def _check_bert_tokenizer(tokenizer: BertTokenizerFast, name: str) -> BertTokenizerFast:
    missing = [t for t in ("cls_token", "sep_token", "pad_token", "mask_token") if getattr(tokenizer, t + "_id") is None]
    if missing:
        raise UserError(f"tokenizer {name!r} lacks {', '.join(missing)}; use a BERT WordPiece tokenizer")
    return tokenizer


def _train(documents: Iterable[str], config: TokenizerConfig, out_dir: Path) -> None:
    """Learn a WordPiece vocabulary on `documents` and save it in HF format into `out_dir`."""
    vocab = learn_vocab(documents, config.vocab_size, list(SPECIAL_TOKENS), config.min_frequency, config.lowercase)
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(
        vocab_file=str(vocab_file), do_lower_case=config.lowercase, strip_accents=config.lowercase
    )
    tokenizer.save_pretrained(out_dir)


def trained_tokenizer_dir(data: DataConfig, config: TokenizerConfig, cache_dir: Path) -> Path:
    """The cached directory of a tokenizer trained on a sample of `data`'s corpus (trained on first use).

    The key is the corpus' identity (paths, sizes, mtimes; nothing is read) and the training settings.
    """
    settings = [sample_key(data, config.train_sample_bytes), config.vocab_size, config.lowercase, config.min_frequency]
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    out_dir = cache_dir / "tokenizers" / key
    if not (out_dir / "tokenizer.json").is_file():
        documents = list(sample_documents(data, config.train_sample_bytes))  # bad text fails before any write
        if not documents:
            raise UserError(f"corpus {describe(data)} holds no documents; pass a source with text")
        write_dir(out_dir, lambda directory: _train(documents, config, directory))
    return out_dir


def tokenizer_label(config: TokenizerConfig) -> str:
    """How a prepared dataset's manifest names the configured tokenizer."""
    return "trained" if config.train else config.name


def load_tokenizer(
    config: TokenizerConfig, data: DataConfig | None = None, cache_dir: Path | None = None
) -> BertTokenizerFast:
    """The configured tokenizer: trained on a sample of `data`'s corpus when `config.train`, else
    loaded from `config.name`."""
    if config.train:
        if data is None or cache_dir is None:
            raise ValueError("training a tokenizer needs the data config and a cache directory")
        path = trained_tokenizer_dir(data, config, cache_dir)
        return _check_bert_tokenizer(BertTokenizerFast.from_pretrained(path), str(path))
    tokenizer = load_local_or_hub(
        config.name,
        BertTokenizerFast.from_pretrained,
        "tokenizer",
        "pass tokenizer.name=DIR (a saved BERT tokenizer) or tokenizer.train=true "
        "(offline, configs/meditations_scratch.yaml needs no hub)",
    )
    return _check_bert_tokenizer(tokenizer, config.name)
