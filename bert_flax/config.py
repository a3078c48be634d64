"""Typed run configuration: frozen dataclasses per concern, YAML files, `key.sub=value` overrides.

No JAX import here, so a config is validated before any device is touched. Every section
coerces and type-checks its fields in `__post_init__`, so a config built from Python, from YAML
or from the command line goes through the same checks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

import yaml

from bert_flax.errors import UserError, first_line

# Google's BERT miniatures and the two published sizes. Heads: hidden / 64, FFN: 4 × hidden.
MODEL_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"num_hidden_layers": 2, "hidden_size": 128},
    "mini": {"num_hidden_layers": 4, "hidden_size": 256},
    "small": {"num_hidden_layers": 4, "hidden_size": 512},
    "medium": {"num_hidden_layers": 8, "hidden_size": 512},
    "base": {"num_hidden_layers": 12, "hidden_size": 768},
    "large": {"num_hidden_layers": 24, "hidden_size": 1024},
}
PRESET_MAX_POSITIONS = 512
OBJECTIVES = ("mlm", "nsp")


def _fail(where: str, message: str) -> typing.NoReturn:
    raise UserError(f"config: {where} {message}")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Return `value` converted to `annotation`'s type, or raise a UserError naming the key."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if origin is Literal:
        if value not in args:
            _fail(where, f"must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is tuple:
        items = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(items, (list, tuple)):
            _fail(where, f"must be a list; got {value!r} ({type(value).__name__})")
        return tuple(_coerce(item, args[0], f"{where}[{i}]") for i, item in enumerate(items))
    if annotation is bool:
        if not isinstance(value, bool):
            _fail(where, f"must be true or false; got {value!r} ({type(value).__name__})")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, f"must be an integer; got {value!r} ({type(value).__name__})")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(where, f"must be a number; got {value!r} ({type(value).__name__})")
        if (isinstance(value, int) and abs(value) > 1e308) or not math.isfinite(value):
            _fail(where, f"must be a finite number; got {value!r}")
        return float(value)
    if annotation is str:
        if value is None:
            return ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads `data.path=2024` or `name: 123` as numbers
        if not isinstance(value, str):
            _fail(where, f"must be a string; got {value!r} ({type(value).__name__})")
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} at {where}")


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class _Section:
    """Base of every config section: coerces and type-checks fields, then runs `_validate`."""

    section: typing.ClassVar[str]

    def __post_init__(self) -> None:
        for name, annotation in _field_types(type(self)).items():
            if name == "section":
                continue
            value = _coerce(getattr(self, name), annotation, f"{self.section}.{name}")
            object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        pass

    def _check(self, condition: bool, name: str, message: str) -> None:
        if not condition:
            _fail(f"{self.section}.{name}", f"{message}; got {getattr(self, name)!r}")

    def _check_probability(self, name: str) -> None:
        self._check(0.0 <= getattr(self, name) <= 1.0, name, "must be in [0, 1]")


@dataclasses.dataclass(frozen=True)
class DataConfig(_Section):
    section: typing.ClassVar[str] = "data"
    # Text files or globs, local or gs://BUCKET/... Empty: read `dataset`, or else the `corpus` manifest's file.
    path: tuple[str, ...] = ()
    # Name of a manifest in the project's data/ directory, used when path and dataset are empty: its
    # file shipped beside it (meditations.txt), else its pinned download.
    corpus: str = "meditations"
    # A Hugging Face `datasets` source (datasets.load_dataset(dataset, dataset_config)).
    dataset: str = ""
    dataset_config: str = ""
    # Split of `dataset` to read (pre-training holds its eval documents out of it).
    dataset_split: str = "train"
    # Column of `dataset` that holds the text.
    text_column: str = "text"
    # How documents are delimited: every non-empty line, blocks separated by blank lines, or (for a
    # `dataset`) every row (a Wikipedia article). Rows are never joined: each is split on its own.
    documents: Literal["line", "blank_line", "row"] = "line"
    # Read `dataset` with datasets' streaming=True (nothing downloaded or converted up front).
    streaming: bool = False
    # Fraction of whole documents held out for evaluation (at least one, two when NSP is on).
    eval_fraction: float = 0.05
    # Sequence length of every example, [CLS] and [SEP]s included.
    max_seq_len: int = 128
    # NSP pairs: Google's multi-sentence segments, or single sentences (as the original notebook paired them).
    pairing: Literal["segments", "sentences"] = "segments"
    # Probability of a shorter target length for a segment pair (Google's short_seq_prob).
    short_seq_prob: float = 0.1
    # Pack several whole examples (NSP pairs, or windows with train.objectives=[mlm]) into each row, packed by
    # best-fit decreasing in groups of examples and isolated by block-diagonal attention (needs model.impl=fast),
    # so the step computes on text instead of padding. Off: one example per row, padded.
    packing: bool = False
    # With packing: at most this many examples in a row (the width of the batch's per-example arrays).
    max_examples_per_row: int = 16
    # Where downloads and prepared corpora are cached (local). Empty: $BERT_FLAX_CACHE or ~/.cache/bert_flax.
    cache_dir: str = ""
    # The prepared (tokenized, memory-mapped) dataset: `bert-flax prepare` writes it, `pretrain` builds it
    # when missing. Empty: a directory under the cache named by the sources, document mode and tokenizer.
    # A gs://BUCKET/PREFIX: published there, and copied once into the cache by every machine that uses it.
    prepared_dir: str = ""
    # Worker processes that split and tokenize while preparing. 0: one per core.
    prepare_workers: int = 0
    # Input text per unit of work while preparing; memory grows with it (and workers), not with the corpus.
    prepare_chunk_bytes: int = 4_000_000

    def _validate(self) -> None:
        self._check(0.0 <= self.eval_fraction < 1.0, "eval_fraction", "must be in [0, 1)")
        self._check(self.documents != "row" or self.dataset != "", "documents", "is row only for a data.dataset source")
        self._check(not self.streaming or self.dataset != "", "streaming", "applies to a data.dataset source only")
        self._check(self.prepare_workers >= 0, "prepare_workers", "must be 0 (one per core) or more")
        self._check(self.prepare_chunk_bytes >= 1024, "prepare_chunk_bytes", "must be at least 1024")
        self._check(self.max_seq_len >= 8, "max_seq_len", "must be at least 8")
        self._check(self.max_examples_per_row >= 1, "max_examples_per_row", "must be at least 1")
        self._check_probability("short_seq_prob")

    @property
    def examples_per_row(self) -> int:
        """E, the width of a batch's per-example arrays: max_examples_per_row with packing, else 1."""
        return self.max_examples_per_row if self.packing else 1


@dataclasses.dataclass(frozen=True)
class TokenizerConfig(_Section):
    section: typing.ClassVar[str] = "tokenizer"
    # Hugging Face name or local directory of a BERT WordPiece tokenizer.
    name: str = "bert-base-uncased"
    # Train a WordPiece vocabulary on the corpus instead of loading `name`.
    train: bool = False
    # Vocabulary size of a trained tokenizer.
    vocab_size: int = 8000
    # Lower-case and strip accents when training (uncased BERT).
    lowercase: bool = True
    # Minimum count of a token to enter a trained vocabulary.
    min_frequency: int = 2
    # A trained vocabulary is learned from a seeded sample of about this many bytes of documents.
    train_sample_bytes: int = 20_000_000

    def _validate(self) -> None:
        self._check(self.vocab_size >= 200, "vocab_size", "must be at least 200")
        self._check(self.min_frequency >= 1, "min_frequency", "must be at least 1")
        self._check(self.train_sample_bytes >= 1000, "train_sample_bytes", "must be at least 1000")
        self._check(self.train or self.name != "", "name", "must name a tokenizer unless train=true")


@dataclasses.dataclass(frozen=True)
class MaskingConfig(_Section):
    section: typing.ClassVar[str] = "masking"
    # Fraction of (non-special) tokens selected for prediction.
    mask_prob: float = 0.15
    # Prediction slots per row. null: max_seq_len × mask_prob rounded up to a multiple of 4; with data.packing,
    # the most the masking rule can select in a row of data.max_examples_per_row examples, rounded up the same way.
    max_predictions: Optional[int] = None
    # Of the selected tokens: this fraction becomes [MASK] ...
    mask_replace_prob: float = 0.8
    # ... this fraction a random token, and the rest stay as they are.
    random_replace_prob: float = 0.1
    # Select whole words (all WordPiece pieces of a word) together.
    whole_word_mask: bool = False

    def _validate(self) -> None:
        self._check(0.0 < self.mask_prob <= 1.0, "mask_prob", "must be in (0, 1]")
        self._check_probability("mask_replace_prob")
        self._check_probability("random_replace_prob")
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-9:
            _fail(
                "masking.mask_replace_prob + masking.random_replace_prob",
                f"must be at most 1; got {self.mask_replace_prob} + {self.random_replace_prob}",
            )
        if self.max_predictions is not None:
            self._check(self.max_predictions >= 1, "max_predictions", "must be at least 1")

    def num_predictions(self, max_seq_len: int, examples_per_row: int = 1) -> int:
        """P, the fixed number of prediction slots per row (`examples_per_row` > 1: packed rows)."""
        if self.max_predictions is not None:
            return self.max_predictions
        if examples_per_row == 1:
            most = max_seq_len * self.mask_prob
        else:
            most = self.row_prediction_bound(max_seq_len, examples_per_row)
        return min(max_seq_len, 4 * math.ceil(most / 4))

    def row_prediction_bound(self, max_seq_len: int, examples_per_row: int) -> int:
        """The most predictions the masking rule selects in one row of `max_seq_len` positions holding at most
        `examples_per_row` examples.

        An example of m maskable tokens gets max(1, round-half-up(mask_prob × m)) <= mask_prob × m + 1, and k
        examples have at most max_seq_len − 2k maskable tokens together ([CLS] and [SEP] at least), so a row
        of k examples holds at most mask_prob × (max_seq_len − 2k) + k predictions (k at most max_seq_len // 3).
        """
        most_examples = max(1, min(examples_per_row, max_seq_len // 3))
        rows = (self.mask_prob * (max_seq_len - 2 * k) + k for k in range(1, most_examples + 1))
        return min(max_seq_len, math.floor(max(rows) + 1e-9))


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
    section: typing.ClassVar[str] = "model"
    # Architecture when training from scratch: tiny, mini, small, medium, base, large.
    preset: str = "base"
    # Model SOURCE to start from: a Hugging Face name, a directory, a run (local or gs://). Empty: random
    # init from `preset`.
    init: str = "bert-base-uncased"
    # Compute dtype; parameters and optimizer state stay float32.
    dtype: Literal["float32", "bfloat16"] = "float32"
    # hf: transformers' FlaxBertForPreTraining module. fast: this project's BERT on the same parameter tree
    # (jax.nn.dot_product_attention: cuDNN fused attention on GPU in bfloat16 when attention_dropout is 0).
    # Pre-training, eval and bench; fine-tuning runs transformers' task modules.
    impl: Literal["hf", "fast"] = "hf"
    # Dropout on the attention probabilities; null: the model's attention_probs_dropout_prob. Fused
    # attention (impl=fast) needs 0; with more, fast computes the probabilities explicitly.
    attention_dropout: Optional[float] = None
    # Recompute activations in the backward pass, per layer: none; full (hf: transformers'
    # gradient_checkpointing); dots (fast only: keep the matmul outputs, recompute the rest).
    remat: Literal["none", "full", "dots"] = "none"
    # impl=fast only: run the layers under jax.lax.scan (stacked inside the step; the tree stays HF's).
    scan_layers: bool = False

    def _validate(self) -> None:
        if self.preset not in MODEL_PRESETS:
            _fail("model.preset", f"must be one of {', '.join(MODEL_PRESETS)}; got {self.preset!r}")
        if self.attention_dropout is not None:
            self._check(0.0 <= self.attention_dropout < 1.0, "attention_dropout", "must be in [0, 1) or null")
        if self.impl == "hf" and self.scan_layers:
            _fail("model.scan_layers", "needs model.impl=fast (transformers' module has no scanned layers)")
        if self.impl == "hf" and self.remat == "dots":
            _fail("model.remat", "dots needs model.impl=fast; with model.impl=hf use none or full")


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Section):
    section: typing.ClassVar[str] = "train"
    # Optimizer steps.
    steps: int = 1000
    # Global batch (sequences per optimizer step, all devices and accumulation steps together).
    batch_size: int = 32
    # Micro-batches accumulated per optimizer step; batch_size must divide by it.
    grad_accum_steps: int = 1
    # Pre-training objectives: any of mlm, nsp.
    objectives: tuple[str, ...] = OBJECTIVES
    # Seed of everything random: init, dropout, pairing, masking, the eval split.
    seed: int = 0

    def _validate(self) -> None:
        self._check(self.steps >= 1, "steps", "must be at least 1")
        self._check(self.batch_size >= 1, "batch_size", "must be at least 1")
        self._check(self.grad_accum_steps >= 1, "grad_accum_steps", "must be at least 1")
        self._check(
            self.batch_size % self.grad_accum_steps == 0,
            "batch_size",
            f"must be divisible by train.grad_accum_steps={self.grad_accum_steps}",
        )
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        self._check(bool(self.objectives) and not unknown, "objectives", "must be a non-empty list of mlm, nsp")

    @property
    def nsp(self) -> bool:
        return "nsp" in self.objectives


@dataclasses.dataclass(frozen=True)
class OptimConfig(_Section):
    section: typing.ClassVar[str] = "optim"
    # adamw (no decay on biases and LayerNorm) or lamb.
    name: Literal["adamw", "lamb"] = "adamw"
    # Peak learning rate, reached after warmup.
    learning_rate: float = 5e-5
    # Linear warmup steps from 0 to learning_rate.
    warmup_steps: int = 100
    # Decay after warmup, to 0 at train.steps.
    schedule: Literal["linear", "cosine"] = "linear"
    # Decoupled weight decay (AdamW/LAMB), not applied to biases and LayerNorm parameters.
    weight_decay: float = 0.01
    # Global gradient-norm clip; 0 disables it.
    clip_norm: float = 1.0

    def _validate(self) -> None:
        self._check(self.learning_rate > 0, "learning_rate", "must be positive")
        self._check(self.warmup_steps >= 0, "warmup_steps", "must be non-negative")
        self._check(self.weight_decay >= 0, "weight_decay", "must be non-negative")
        self._check(self.clip_norm >= 0, "clip_norm", "must be non-negative")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig(_Section):
    section: typing.ClassVar[str] = "checkpoint"
    # Save every this many steps (and at the end).
    every: int = 250
    # Checkpoints kept on disk.
    keep: int = 3

    def _validate(self) -> None:
        self._check(self.every >= 1, "every", "must be at least 1")
        self._check(self.keep >= 1, "keep", "must be at least 1")


@dataclasses.dataclass(frozen=True)
class EvalConfig(_Section):
    section: typing.ClassVar[str] = "eval"
    # Evaluate on the held-out documents every this many steps (and at the end).
    every: int = 250
    # Global eval batch size.
    batch_size: int = 32
    # Score at most this many batches of held-out examples per eval (a fixed, seeded selection). 0: all.
    max_batches: int = 100

    def _validate(self) -> None:
        self._check(self.every >= 1, "every", "must be at least 1")
        self._check(self.batch_size >= 1, "batch_size", "must be at least 1")
        self._check(self.max_batches >= 0, "max_batches", "must be 0 (all) or more")


@dataclasses.dataclass(frozen=True)
class ParallelConfig(_Section):
    section: typing.ClassVar[str] = "parallel"
    # jit: a ("data",) mesh with NamedSharding; pmap: the classic replicate-and-pmean recipe.
    mode: Literal["jit", "pmap"] = "jit"
    # Call jax.distributed.initialize() (multi-host TPU pods, multi-process GPU or CPU).
    distributed: bool = False
    # host:port of process 0's coordinator service. Empty: auto-detect (TPU, SLURM, Open MPI).
    coordinator_address: str = ""
    # Processes in the job. 0: auto-detect.
    num_processes: int = 0
    # This process' index in [0, num_processes). -1: auto-detect.
    process_id: int = -1

    def _validate(self) -> None:
        self._check(self.num_processes >= 0, "num_processes", "must be non-negative (0: auto-detect)")
        self._check(self.process_id >= -1, "process_id", "must be at least -1 (-1: auto-detect)")
        if self.num_processes and self.process_id >= self.num_processes:
            limit = f"parallel.num_processes={self.num_processes}"
            _fail("parallel.process_id", f"must be below {limit}; got {self.process_id}")
        if self.coordinator_address:
            host, sep, port = self.coordinator_address.rpartition(":")
            self._check(bool(host and sep and port.isdigit()), "coordinator_address", "must be host:port")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(_Section):
    section: typing.ClassVar[str] = "finetune"
    # classify (sequence classification) or qa (extractive question answering); the CLI verb sets it.
    task: Literal["classify", "qa"] = "classify"
    # Train and eval files (classify: .csv/.tsv/.jsonl; qa: SQuAD .json or .jsonl), or `data.dataset`
    # with `data.dataset_split` for training and `dataset_eval_split` for evaluation.
    train_path: str = ""
    eval_path: str = ""
    dataset_eval_split: str = "validation"
    # classify: the optional second text of sentence pairs (the first is data.text_column), and the labels.
    text_pair_column: str = ""
    label_column: str = "label"
    # qa: tokens shared by consecutive windows of a long context (Hugging Face's `stride`).
    doc_stride: int = 128
    # qa: question tokens kept (longer questions are truncated).
    max_query_len: int = 64
    # qa: longest answer in tokens.
    max_answer_len: int = 30
    # qa: candidate start and end positions scored per window.
    n_best: int = 20
    # qa: SQuAD v2 data (unanswerable questions).
    version_2: bool = False
    # qa, v2: predict no answer when the null score beats the best span's score by more than this.
    null_threshold: float = 0.0

    def _validate(self) -> None:
        self._check(self.doc_stride >= 0, "doc_stride", "must be non-negative")
        self._check(self.max_query_len >= 1, "max_query_len", "must be at least 1")
        self._check(self.max_answer_len >= 1, "max_answer_len", "must be at least 1")
        self._check(self.n_best >= 1, "n_best", "must be at least 1")


@dataclasses.dataclass(frozen=True)
class LogConfig(_Section):
    section: typing.ClassVar[str] = "log"
    # Read the train metrics from the device every this many steps (and at eval, checkpoint and
    # stop points); a train record holds the means over the steps since the last one. 1: every step.
    every: int = 1
    # Write TensorBoard event files to RUN_DIR/tensorboard (train/... and eval/... tags, one file).
    tensorboard: bool = True
    # Also log the scalars to Weights & Biases (needs `pip install wandb`); a resumed run continues its W&B run.
    wandb: bool = False
    # W&B project of the run.
    wandb_project: str = "bert_flax"
    # W&B entity (user or team). Empty: your default entity.
    wandb_entity: str = ""
    # W&B run name. Empty: the run dir's name.
    wandb_run_name: str = ""

    def _validate(self) -> None:
        self._check(self.every >= 1, "every", "must be at least 1")
        self._check(not self.wandb or self.wandb_project != "", "wandb_project", "must name a project when wandb=true")


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: one field per section, cross-section checks in `__post_init__`."""

    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    masking: MaskingConfig = MaskingConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    optim: OptimConfig = OptimConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    eval: EvalConfig = EvalConfig()
    parallel: ParallelConfig = ParallelConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    log: LogConfig = LogConfig()

    def __post_init__(self) -> None:
        # A checkpoint's own position count (model.init) is checked where it is loaded.
        if not self.model.init and self.data.max_seq_len > PRESET_MAX_POSITIONS:
            _fail(
                "data.max_seq_len",
                f"is {self.data.max_seq_len} but the model has only {PRESET_MAX_POSITIONS} positions; "
                f"use data.max_seq_len<={PRESET_MAX_POSITIONS}",
            )
        predictions = self.masking.num_predictions(self.data.max_seq_len)
        if predictions > self.data.max_seq_len:
            _fail("masking.max_predictions", f"is {predictions}, more than data.max_seq_len={self.data.max_seq_len}")
        if self.data.packing:
            self._check_packing()
        context_tokens = self.data.max_seq_len - self.finetune.max_query_len - 3  # [CLS] Q [SEP] C [SEP]
        if self.finetune.task == "qa" and not 0 <= self.finetune.doc_stride < context_tokens:
            _fail(
                "finetune.doc_stride",
                f"is {self.finetune.doc_stride} but windows hold only {context_tokens} context tokens "
                f"(data.max_seq_len - finetune.max_query_len - 3); lower it or raise data.max_seq_len",
            )


    @property
    def num_predictions(self) -> int:
        """P, the prediction slots per row of this config's batches."""
        return self.masking.num_predictions(self.data.max_seq_len, self.data.examples_per_row)

    def _check_packing(self) -> None:
        """data.packing needs the fast impl, rows that hold two examples, and room for every row's predictions."""
        data = self.data
        if self.model.impl != "fast":
            _fail(
                "data.packing",
                "needs model.impl=fast (transformers' Flax BERT takes only a [B, L] attention mask, so packed "
                "examples would attend to each other); set model.impl=fast or data.packing=false",
            )
        shortest = 5 if self.train.nsp else 3  # [CLS] A [SEP] B [SEP], or [CLS] A [SEP]
        if data.max_seq_len < 2 * shortest:
            _fail(
                "data.max_seq_len",
                f"is {data.max_seq_len} but a packed row must hold two examples of at least {shortest} tokens; "
                f"use data.max_seq_len>={2 * shortest} or data.packing=false",
            )
        bound = self.masking.row_prediction_bound(data.max_seq_len, data.examples_per_row)
        if self.masking.max_predictions is not None and self.masking.max_predictions < bound:
            _fail(
                "masking.max_predictions",
                f"is {self.masking.max_predictions} but a packed row of data.max_seq_len={data.max_seq_len} with up "
                f"to data.max_examples_per_row={data.max_examples_per_row} examples can hold {bound} predictions; "
                f"use masking.max_predictions>={bound} or null",
            )


SECTIONS: dict[str, type] = typing.get_type_hints(Config)


def _sections(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`raw` as {section: {key: value}}; an unknown section is an error naming the valid ones."""
    sections: dict[str, dict[str, Any]] = {}
    for name, values in raw.items():
        if name not in SECTIONS:
            raise UserError(f"config: unknown section {name!r}; valid sections: {', '.join(SECTIONS)}")
        values = values or {}
        if not isinstance(values, Mapping):
            raise UserError(f"config: section {name!r} must be a mapping of keys, got {values!r}")
        sections[name] = dict(values)
    return sections


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build a Config from nested mappings; unknown sections and keys are errors naming the valid ones."""
    if not isinstance(raw, Mapping):
        raise UserError(f"config: expected a mapping of sections, got {type(raw).__name__}")
    sections = {}
    for name, values in _sections(raw).items():
        cls = SECTIONS[name]
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in valid:
                raise UserError(f"config: unknown key '{name}.{key}'; valid keys of {name}: {', '.join(valid)}")
        sections[name] = cls(**values)
    return Config(**sections)


def parse_override(item: str) -> tuple[str, str, Any]:
    """Split `section.key=value` into (section, key, value), the value read as YAML."""
    lhs, sep, rhs = item.partition("=")
    section, dot, key = lhs.strip().partition(".")
    if not sep or not dot or not section or not key or "." in key:
        raise UserError(f"override {item!r} is not of the form section.key=value (e.g. train.steps=200)")
    try:
        value = yaml.safe_load(rhs) if rhs.strip() else None
    except yaml.YAMLError:
        value = rhs
    return section, key, value


def load_config(path: Any = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (defaults when `path` is None) and apply `section.key=value` overrides.

    `path`: a file name, or any path object with `is_file` and `read_text` (a run's config.yaml in a bucket)."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path) if isinstance(path, str) else path
        if not path.is_file():
            raise UserError(f"config file {path} does not exist; pass an existing YAML file with --config")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            reason = first_line(err)
            raise UserError(f"config file {path} is not valid YAML ({reason}); fix it or pass another --config") from None
        if not isinstance(raw, dict):
            raise UserError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    for item in overrides:
        section, key, value = parse_override(item)
        section_values = raw.setdefault(section, {})
        if not isinstance(section_values, dict):
            raise UserError(f"config: section {section!r} must be a mapping of keys")
        section_values[key] = value
    return config_from_dict(raw)


def config_to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict (tuples as lists), ready for YAML or JSON."""
    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    return {
        name: {f.name: plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
        for name, section in ((f.name, getattr(config, f.name)) for f in dataclasses.fields(config))
    }


def dump_config(config: Config) -> str:
    """The resolved config as YAML; `load_config` of it gives back an equal Config."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
