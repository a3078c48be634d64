"""What `bert-flax bench --suite NAME` times: each suite's shapes, and at each shape our rows (the trainer's
step under config overrides) and the registered baselines. Plain data, no JAX.

A row is a name at a shape: one of `OURS_ROWS` or a baseline of baselines.BASELINES. A new kind of row is
one entry: a baseline in the registry, or one line in OURS_ROWS.
"""

from __future__ import annotations

import dataclasses

from bert_flax.bench.baselines import BASELINES


@dataclasses.dataclass(frozen=True)
class OursRow:
    """The trainer's step as `overrides` configure it, on `data` (synthetic batches or the corpus)."""

    name: str
    overrides: tuple[str, ...]
    data: str = "synthetic"


# The README's settings for accelerators (Pre-training, "Fast path").
FAST_FOR_ACCELERATORS = ("model.impl=fast", "model.attention_dropout=0", "model.scan_layers=true")
OURS_ROWS: tuple[OursRow, ...] = (
    OursRow("fast", FAST_FOR_ACCELERATORS),
    OursRow("hf", ("model.impl=hf",)),
    # Packed rows read the corpus (packing saves padding, which synthetic batches lack); their real tokens/s
    # is the number to hold against `fast`'s (full-length synthetic rows: the most a packed step can reach).
    OursRow("fast packed", (*FAST_FOR_ACCELERATORS, "data.packing=true"), data="real"),
)


@dataclasses.dataclass(frozen=True)
class Shape:
    """A model preset at sequence length × global batch; `skip` names rows not run here (to fit the time)."""

    preset: str
    seq_len: int
    batch_size: int
    stands_for: str = ""  # the accelerator shape a scaled-down one stands for
    skip: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        scaled = f" (for {self.stands_for})" if self.stands_for else ""
        return f"{self.preset}{scaled}, {self.seq_len} × {self.batch_size}"


@dataclasses.dataclass(frozen=True)
class Suite:
    """A matrix: shapes × rows, one compute dtype and vocabulary, `steps` timed after `warmup`. Rows run
    name by name in `order` (each at every shape; names not in it last), so what matters most runs first
    and a `time_limit_minutes` that runs out skips the rest."""

    title: str
    dtype: str
    vocab_size: int
    shapes: tuple[Shape, ...]
    steps: int
    warmup: int
    time_limit_minutes: float | None
    ours: tuple[OursRow, ...] = OURS_ROWS
    order: tuple[str, ...] = ("fast", "pytorch-compile", "fast packed", "hf", "pytorch-eager", "hf-example")


@dataclasses.dataclass(frozen=True)
class PlannedRow:
    """One process of a suite: ours (`baseline` None) or a baseline, at a shape."""

    shape: Shape
    name: str
    overrides: tuple[str, ...]  # the config of ours, or the model and batch an in-process baseline runs on
    data: str = "synthetic"
    baseline: str | None = None


_NOT_ON_LARGE = ("hf", "hf-example")  # transformers' module and example are slowest to compile: timed once
SUITES: dict[str, Suite] = {
    "accelerator": Suite(
        "BERT-base and BERT-large, bfloat16, on the accelerator (the goal's matrix)",
        dtype="bfloat16",
        vocab_size=30522,
        shapes=(
            Shape("base", 128, 256),
            Shape("base", 512, 32, skip=_NOT_ON_LARGE),
            Shape("large", 512, 32, skip=_NOT_ON_LARGE),
        ),
        steps=20,
        warmup=3,
        time_limit_minutes=7.5,  # with pip install and start-up, one command in 8 minutes
    ),
    "cpu": Suite(
        "the accelerator matrix scaled down for a CPU: smaller presets and batches, float32, 5 timed steps",
        dtype="float32",
        vocab_size=8000,
        shapes=(
            Shape("mini", 128, 16, stands_for="base 128 × 256"),
            Shape("mini", 512, 4, stands_for="base 512 × 32", skip=_NOT_ON_LARGE),
            Shape("small", 512, 4, stands_for="large 512 × 32", skip=_NOT_ON_LARGE),
        ),
        steps=5,
        warmup=1,
        time_limit_minutes=None,
    ),
    "smoke": Suite(
        "each kind of row once on a tiny model (fast packed on the corpus): does the suite work here (the tests run it)",
        dtype="float32",
        vocab_size=1000,
        shapes=(Shape("tiny", 64, 8, skip=("fast",)),),
        steps=2,
        warmup=1,
        time_limit_minutes=None,
    ),
}


def default_suite(backend: str) -> str:
    """The suite `--suite` without a name runs: the accelerator matrix on a GPU or TPU, its CPU scale else."""
    return "cpu" if backend == "cpu" else "accelerator"


def base_overrides(suite: Suite, shape: Shape) -> tuple[str, ...]:
    """Every row's model and batch: a random-init preset with the suite's vocabulary, dtype and shape."""
    return (
        "model.init=",
        f"model.preset={shape.preset}",
        f"model.dtype={suite.dtype}",
        "tokenizer.train=true",  # synthetic batches then need no tokenizer: the vocabulary is vocab_size
        f"tokenizer.vocab_size={suite.vocab_size}",
        f"data.max_seq_len={shape.seq_len}",
        f"train.batch_size={shape.batch_size}",
    )


def plan(suite: Suite, baselines: list[str]) -> list[PlannedRow]:
    """The suite's rows in the order they run (see Suite)."""
    rows = []
    for shape in suite.shapes:
        base = base_overrides(suite, shape)
        rows += [PlannedRow(shape, row.name, base + row.overrides, row.data) for row in suite.ours]
        rows += [PlannedRow(shape, name, base, baseline=name) for name in baselines if name in BASELINES]
    rows = [row for row in rows if row.name not in row.shape.skip]
    rank = {name: index for index, name in enumerate(suite.order)}
    return sorted(rows, key=lambda row: rank.get(row.name, len(rank)))  # stable: shapes keep their order
