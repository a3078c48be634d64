"""Where a trained model comes from, resolved to (BertConfig, float32 params, tokenizer).

The params are those of the head class named by the config's `architectures` (architectures.py):
pre-training heads by default, a fine-tuned classification or QA head when the config says so.

A SOURCE is one of: a run directory (its newest readable checkpoint), one checkpoint step of a run
(RUN_DIR/checkpoints/STEP), a `save_pretrained` directory (Flax msgpack or PyTorch safetensors;
`.bin` only through torch.load(weights_only=True), which transformers does), or a hub name.
Runs and directories may be in a bucket (gs://): checkpoints are read where they are, a run's
tokenizer and a save_pretrained directory are copied into a temporary local directory first.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import transformers
from transformers import BertConfig, BertTokenizerFast
from transformers.modeling_flax_utils import FlaxPreTrainedModel

from bert_flax.engine.checkpoint import read_params
from bert_flax.errors import UserError, first_line
from bert_flax.hub import load_local_or_hub
from bert_flax.model.architectures import architecture_named
from bert_flax.run.layout import RunDir
from bert_flax.storage import AnyPath, GsPath, check_bucket, local_copy, to_path

log = logging.getLogger(__name__)


def _drop_flax_deprecation(record: logging.LogRecord) -> bool:
    """transformers 4.x announces on every Flax model that v5 drops Flax; we pin <5, so it is noise."""
    return "TensorFlow and JAX classes are deprecated" not in record.getMessage()


logging.getLogger("transformers.modeling_flax_utils").addFilter(_drop_flax_deprecation)
# How to go on when a name is neither a local directory nor a cached hub model and the hub is unreachable.
OFFLINE_FIX = (
    "offline, pass a local directory (a bert-flax run or a save_pretrained model), "
    "or train from scratch with --config configs/meditations_scratch.yaml"
)


@dataclasses.dataclass
class LoadedModel:
    config: BertConfig
    params: Any  # NumPy float32, the tree of the config's architecture (FlaxBertForPreTraining by default)
    tokenizer: str  # a directory (or hub name) BertTokenizerFast.from_pretrained loads
    description: str  # for messages and model cards: "run runs/x, step 600"
    run_dir: AnyPath | None = None
    step: int | None = None

    def load_tokenizer(self) -> BertTokenizerFast:
        """The source's tokenizer; one with more tokens than the model's embeddings is an error."""
        tokenizer = load_local_or_hub(
            self.tokenizer, BertTokenizerFast.from_pretrained, "tokenizer", f"{self.description} has no tokenizer files"
        )
        if len(tokenizer) > self.config.vocab_size:
            raise UserError(
                f"the tokenizer of {self.description} has {len(tokenizer)} tokens but the model has "
                f"{self.config.vocab_size}; they do not belong together"
            )
        return tokenizer


def _run_config(run: RunDir) -> BertConfig:
    if not run.model_config.is_file():
        raise UserError(
            f"run {run.path} has no {RunDir.MODEL_CONFIG} (a training run writes it before its first step); "
            "pass a complete run or a save_pretrained directory"
        )
    return BertConfig(**json.loads(run.model_config.read_text(encoding="utf-8")))  # as from_json_file builds it, local or gs://


def _from_run(run_dir: AnyPath, step: int | None) -> LoadedModel:
    run = RunDir(run_dir)
    steps = run.checkpoint_steps()
    if not steps:
        raise UserError(f"run {run_dir} has no checkpoint yet; train it first or pass a model directory")
    if step is not None and step not in steps:
        raise UserError(f"run {run_dir} has no checkpoint step {step}; saved steps: {', '.join(map(str, steps))}")
    candidates = [step] if step is not None else list(reversed(steps))
    for index, candidate in enumerate(candidates):
        try:
            params = read_params(run.checkpoints / str(candidate))
        except UserError as err:
            if index == len(candidates) - 1:
                raise
            log.warning("%s; using the previous checkpoint", err)
            continue
        return LoadedModel(
            _run_config(run),
            params,
            str(local_copy(run.tokenizer)),
            f"run {run_dir}, step {candidate}",
            run_dir,
            candidate,
        )
    raise AssertionError("unreachable")


def _from_pretrained(name: str, seed: int, description: str | None = None) -> LoadedModel:
    def load(path: str, **kwargs: Any) -> FlaxPreTrainedModel:
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # callers report missing heads themselves
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # The head class the directory was saved from, so its head weights load (pre-training by default).
                config_dict, _ = BertConfig.get_config_dict(path, **kwargs)
                model_type = config_dict.get("model_type", "bert")
                if model_type != "bert":  # BertConfig would read a GPT-2 config.json without a word
                    raise UserError(f"{name} is a {model_type!r} model, not BERT; pass a BERT checkpoint")
                flax_class = architecture_named(config_dict.get("architectures")).flax_class
                return flax_class.from_pretrained(path, seed=seed, **kwargs)
        finally:
            transformers.logging.set_verbosity(verbosity)

    if _only_bin(Path(name).expanduser()):  # transformers reads it with torch.load(weights_only=True)
        model = load_local_or_hub(name, lambda path, **kw: load(path, from_pt=True, **kw), "model", OFFLINE_FIX)
    else:
        model = load_local_or_hub(name, load, "model", OFFLINE_FIX)
    params = jax.tree.map(lambda x: np.asarray(x, np.float32), model.params)
    return LoadedModel(model.config, params, name, description or name)


def load_model_source(source: str, seed: int = 0) -> LoadedModel:
    """Resolve SOURCE (see the module docstring) to config, params and tokenizer.

    `seed` initialises weights the checkpoint lacks.
    """
    path = to_path(source).expanduser()
    if isinstance(path, GsPath):
        check_bucket(path, "model", "pass a model directory, a run directory or a hub name")
    if path.is_dir() and RunDir(path).is_run():
        return _from_run(path, None)
    run_of_step = path.parent.parent
    if path.is_dir() and path.name.isdigit() and path.parent.name == RunDir.CHECKPOINTS and RunDir(run_of_step).is_run():
        return _from_run(run_of_step, int(path.name))
    if path.is_file():
        raise UserError(f"{source} is a file; pass a model directory, a run directory or a hub name")
    if not path.exists() and (isinstance(path, GsPath) or _is_path_not_hub_name(source)):
        raise UserError(f"cannot load model {source}: it does not exist; pass a model directory, a run directory or a hub name")
    if path.is_dir() and not (path / "config.json").is_file():
        raise UserError(f"{source} is not a model: no config.json (nor a bert-flax run with {RunDir.CONFIG})")
    if isinstance(path, GsPath):
        path = local_copy(path)
        _check_bin_is_a_state_dict(path)
        return _from_pretrained(str(path), seed, description=source)
    if path.is_dir():
        _check_bin_is_a_state_dict(path)
    return _from_pretrained(source, seed)


def _is_path_not_hub_name(source: str) -> bool:
    """Absolute, ./ ../ ~ or more than one slash: a hub name is NAME or ORG/NAME."""
    return Path(source).is_absolute() or source.startswith((".", "~")) or source.count("/") > 1


def _only_bin(path: Path) -> bool:
    """A directory whose only weights are a PyTorch pickle (no safetensors, no Flax msgpack)."""
    has_other = any(path.glob("*.safetensors")) or (path / "flax_model.msgpack").is_file()
    return (path / "pytorch_model.bin").is_file() and not has_other


def _check_bin_is_a_state_dict(path: Path) -> None:
    """A `.bin`-only directory must hold a plain tensor dict: torch.load(weights_only=True) refuses the rest."""
    bin_file = path / "pytorch_model.bin"
    if _only_bin(path):
        try:
            import torch
        except ImportError:
            raise UserError(
                f"{bin_file} is a PyTorch pickle; install torch to read it, or convert it to safetensors"
            ) from None
        try:
            state = torch.load(bin_file, map_location="cpu", weights_only=True)
        except Exception as err:
            reason = first_line(err)
            raise UserError(
                f"{bin_file} is not a plain state dict ({reason[:160]}); save it with safetensors"
            ) from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise UserError(f"{bin_file} is not a plain state dict of tensors; save the model with save_pretrained")

