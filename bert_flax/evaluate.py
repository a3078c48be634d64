"""`bert-flax eval`: a pre-trained model's MLM and NSP on the held-out documents, measured as the trainer does.

The data, the DataParallel eval step and the metrics are the trainer's (`build_pretraining_data`,
`make_data_parallel`, `summed_eval` + `normalize`), so evaluating a run's checkpoint reproduces the eval event
that `pretrain` logged for that step. The corpus is tokenized with the model's own tokenizer.
Nothing is written but the data cache (`data.cache_dir`) that pre-training shares.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import optax
from transformers import BertTokenizerFast, FlaxBertForPreTraining

from bert_flax.config import Config, load_config
from bert_flax.data.dataset import build_pretraining_data
from bert_flax.data.tokenizer import load_tokenizer
from bert_flax.engine.loop import summed_eval
from bert_flax.engine.parallel import check_eval_batch_size, initialize_distributed, make_data_parallel
from bert_flax.engine.step import init_train_state
from bert_flax.errors import UserError
from bert_flax.interop.sources import LoadedModel, load_model_source
from bert_flax.model.architectures import ARCHITECTURES, PRETRAINING, architecture_of, check_heads
from bert_flax.model.losses import normalize, pretraining_task
from bert_flax.model.pretraining import check_max_seq_len, compute_dtype, initialized_groups
from bert_flax.run.layout import RunDir

# The parameter groups each objective reads (NSP classifies the pooled [CLS]).
OBJECTIVE_HEADS = {"mlm": ("cls/predictions",), "nsp": ("cls/seq_relationship", "bert/pooler")}


@dataclasses.dataclass
class EvalResult:
    source: str  # "run runs/x, step 600", a directory or a hub name
    step: int | None  # the checkpoint's step; None for a save_pretrained directory or a hub model
    metrics: dict[str, float]  # the keys of the trainer's eval events: loss, mlm_loss, ..., nsp_accuracy


def _with_eval_split(config: Config) -> Config:
    if config.data.eval_fraction == 0:
        raise UserError(
            "there is no eval split (data.eval_fraction=0); eval measures the held-out documents: "
            "pass data.eval_fraction=F with 0 < F < 1"
        )
    return config


def check_pretraining_heads(loaded: LoadedModel, objectives: tuple[str, ...]) -> None:
    """A UserError unless the source holds trained weights for the heads of `objectives`.

    transformers gives a checkpoint without them (a BertModel) seeded random heads; measuring those
    says nothing about the model, so they are refused rather than evaluated.
    """
    architecture = architecture_of(loaded.config)
    if architecture.name != PRETRAINING:
        raise UserError(
            f"{loaded.description} has {architecture.title} ({architecture.name}), no MLM/NSP heads; "
            f"eval measures pre-training heads: pass {ARCHITECTURES[PRETRAINING].made_by}"
        )
    check_heads(architecture, loaded.params, loaded.description)
    if loaded.run_dir is not None:  # our pre-training runs always hold the heads
        return
    random = FlaxBertForPreTraining(loaded.config, seed=0).params  # load_model_source's seed for missing weights
    wanted = tuple(group for objective in objectives for group in OBJECTIVE_HEADS[objective])
    missing = [group for group in initialized_groups(loaded.params, random) if group in wanted]
    if missing:
        named = ", ".join(getattr(loaded.config, "architectures", None) or ["no architectures"])
        hint = " (or train.objectives=[mlm] to measure MLM only)" if "cls/predictions" not in missing else ""
        raise UserError(
            f"{loaded.description} has no MLM/NSP heads (a {named}: no weights for {', '.join(missing)}); "
            f"eval measures pre-training heads: pass {ARCHITECTURES[PRETRAINING].made_by}{hint}"
        )


def check_config_tokenizer(config: Config, tokenizer: BertTokenizerFast, loaded: LoadedModel) -> None:
    """A config that names a tokenizer must name the model's vocabulary (a trained one is the model's)."""
    named = config.tokenizer.name
    if config.tokenizer.train or named == loaded.tokenizer:
        return
    theirs = load_tokenizer(config.tokenizer)
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise UserError(
            f"the config's tokenizer.name={named} ({len(theirs)} tokens) is not the vocabulary of "
            f"{loaded.description} ({len(tokenizer)} tokens); pass the config the model was trained with, "
            f"or tokenizer.name={loaded.tokenizer}"
        )


def evaluate_model(source: str, config_path: str | None = None, overrides: Sequence[str] = ()) -> EvalResult:
    """MLM loss/accuracy/perplexity and NSP loss/accuracy of SOURCE on the configured corpus' held-out documents.

    SOURCE: anything `load_model_source` takes. With a run (or one of its checkpoints) and no
    `config_path`, the run's own config.yaml defines the data; `overrides` apply either way.
    """
    # --config, else a run's own config.yaml (the held-out split it trained with), else the defaults.
    config = _with_eval_split(load_config(config_path, overrides)) if config_path is not None else None
    loaded = load_model_source(source)
    if config is None:
        run_config = RunDir(loaded.run_dir).config if loaded.run_dir is not None else None
        config = _with_eval_split(load_config(run_config, overrides))
    check_pretraining_heads(loaded, config.train.objectives)
    tokenizer = loaded.load_tokenizer()
    explicit = config_path is not None or loaded.run_dir is None or any(o.startswith("tokenizer.") for o in overrides)
    if explicit:  # a run's own config names the run's tokenizer
        check_config_tokenizer(config, tokenizer, loaded)
    check_max_seq_len(config.data.max_seq_len, loaded.config, loaded.description)
    if config.parallel.distributed:
        initialize_distributed(config.parallel)
    check_eval_batch_size(config.eval.batch_size, jax.device_count())

    # The data the trainer builds from this config, tokenized with the model's tokenizer.
    model_tokenizer = dataclasses.replace(config.tokenizer, name=loaded.tokenizer, train=False)
    data = build_pretraining_data(dataclasses.replace(config, tokenizer=model_tokenizer))
    assert data.eval is not None  # eval_fraction > 0 holds out at least one document

    model = FlaxBertForPreTraining(loaded.config, dtype=compute_dtype(config.model.dtype), _do_init=False)
    task = pretraining_task(model, config.train.objectives, config.model)
    # Eval reads only the params: no optimizer state, and the train step is never compiled.
    parallel = make_data_parallel(task, optax.identity(), optax.constant_schedule(0.0), config)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), loaded.params)
    state = parallel.place_state(init_train_state(params, optax.identity(), config.train.seed))
    eval_batches = data.eval.eval_batches(config.eval.max_batches, jax.process_index(), jax.process_count())
    metrics = normalize(summed_eval(parallel, state, eval_batches), config.train.objectives)
    return EvalResult(loaded.description, loaded.step, metrics)
