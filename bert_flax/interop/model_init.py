"""The model pre-training starts from: `model.init` (any model SOURCE) or, when it is empty, a
`model.preset` with random parameters.

A source without pre-training heads (a BertModel, or a fine-tuned classification/QA model) gets
them from the seeded random init that transformers' `from_pretrained` would use; which groups
started random is reported once the checks have passed.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
from transformers import BertConfig, FlaxBertForPreTraining

from bert_flax.config import Config
from bert_flax.errors import UserError
from bert_flax.interop.sources import load_model_source
from bert_flax.model.architectures import PRETRAINING
from bert_flax.model.pretraining import (
    PretrainingModel,
    check_max_seq_len,
    compute_dtype,
    from_preset,
    initialized_groups,
)

log = logging.getLogger(__name__)


def _from_source(config: Config) -> PretrainingModel:
    name, seed = config.model.init, config.train.seed
    loaded = load_model_source(name, seed)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), loaded.params)
    bert_config = loaded.config
    heads: tuple[str, ...] = ()
    fine_tuned = "cls" not in params  # a classification / QA model: its encoder, fresh pre-training heads
    if fine_tuned:
        bert_config = BertConfig.from_dict({**loaded.config.to_dict(), "architectures": [PRETRAINING]})
    if loaded.run_dir is None or fine_tuned:  # our own pre-training runs always hold the heads
        # The same seed gives the same random init that from_pretrained used for missing weights.
        random = FlaxBertForPreTraining(bert_config, seed=seed).params
        if fine_tuned:
            params = {**random, "bert": {**random["bert"], **params["bert"]}}
        heads = initialized_groups(params, random)
    model = FlaxBertForPreTraining(bert_config, dtype=compute_dtype(config.model.dtype), _do_init=False)
    return PretrainingModel(model, params, heads)


def build_model(config: Config, vocab_size: int) -> PretrainingModel:
    """FlaxBertForPreTraining from `model.init` (a SOURCE) or `model.preset` (random init).

    `vocab_size` is the tokenizer's; a checkpoint with another vocabulary size is an error.
    """
    pretrained = _from_source(config) if config.model.init else from_preset(config, vocab_size)
    model_vocab = pretrained.config.vocab_size
    if model_vocab != vocab_size:
        raise UserError(
            f"the tokenizer has {vocab_size} tokens but model.init={config.model.init} has {model_vocab}; "
            "use the checkpoint's own tokenizer (tokenizer.name=the same name or directory)"
        )
    check_max_seq_len(config.data.max_seq_len, pretrained.config, f"model.init={config.model.init}")
    if pretrained.initialized_heads:  # after the checks: bad input gets its one error line, nothing else
        log.warning(
            "model.init=%s has no weights for %s; they start from random init",
            config.model.init,
            ", ".join(pretrained.initialized_heads),
        )
    return pretrained
