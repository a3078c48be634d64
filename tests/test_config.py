"""Tests for bert_flax.config: YAML files, overrides, and the UserErrors of bad input."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import pytest

from bert_flax.config import (
    MODEL_PRESETS,
    SECTIONS,
    Config,
    DataConfig,
    MaskingConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
)
from bert_flax.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted((REPO_ROOT / "configs").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERT_FLAX_CACHE", str(tmp_path / "bert_flax_cache"))


def _error(overrides: list[str] | None = None, path: str | Path | None = None) -> str:
    with pytest.raises(UserError) as info:
        load_config(path, overrides or [])
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# Files and round trips


def test_config_files_exist() -> None:
    names = {p.name for p in CONFIG_FILES}
    assert {"smoke.yaml", "meditations.yaml", "meditations_scratch.yaml"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_config_file_loads_and_round_trips(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, Config)
    if path.name == "meditations.yaml":
        assert config == Config()  # no --config means the seed's Meditations job
    else:
        assert config != Config()
    written = tmp_path / "dumped.yaml"
    written.write_text(dump_config(config), encoding="utf-8")
    assert load_config(written) == config
    # The dump holds every field of every section, so it is a complete record of the run.
    reloaded = config_to_dict(load_config(written))
    assert set(reloaded) == set(SECTIONS)
    for name, cls in SECTIONS.items():
        assert set(reloaded[name]) == {f.name for f in dataclasses.fields(cls)}


def test_shipped_configs_values() -> None:
    smoke = load_config(REPO_ROOT / "configs" / "smoke.yaml")
    assert smoke.tokenizer.train is True
    assert smoke.model.init == ""
    assert smoke.model.preset == "tiny"
    assert smoke.data.max_seq_len == 64
    assert smoke.optim.learning_rate == pytest.approx(1e-3)
    scratch = load_config(REPO_ROOT / "configs" / "meditations_scratch.yaml")
    assert scratch.model.init == "" and scratch.tokenizer.train is True
    seed = load_config(REPO_ROOT / "configs" / "meditations.yaml")
    assert seed.train.objectives == ("mlm", "nsp")
    assert seed.tokenizer.name == "bert-base-uncased"


def test_no_path_gives_defaults() -> None:
    assert load_config(None) == Config()
    assert load_config() == Config()


def test_default_config_round_trips(tmp_path: Path) -> None:
    written = tmp_path / "defaults.yaml"
    written.write_text(dump_config(Config()), encoding="utf-8")
    assert load_config(written) == Config()


def test_overridden_config_round_trips(tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            "data.path=[a.txt, 'b c.txt']",
            "optim.learning_rate=1e-4",
            "masking.max_predictions=7",
            "train.objectives=[mlm]",
            "model.init=",
            "tokenizer.train=true",
        ],
    )
    written = tmp_path / "config.yaml"
    written.write_text(dump_config(config), encoding="utf-8")
    assert load_config(written) == config


def test_empty_yaml_and_empty_sections_give_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n", encoding="utf-8")
    assert load_config(empty) == Config()
    sections = tmp_path / "sections.yaml"
    sections.write_text("data:\ntrain:\n", encoding="utf-8")
    assert load_config(sections) == Config()


def test_overrides_apply_on_top_of_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 10\n  batch_size: 4\n", encoding="utf-8")
    config = load_config(path, ["train.steps=20"])
    assert config.train.steps == 20
    assert config.train.batch_size == 4  # untouched keys of the file survive
    # Later overrides of the same key win.
    assert load_config(path, ["train.steps=20", "train.steps=30"]).train.steps == 30


# ---------------------------------------------------------------------------------------------
# Override values


@pytest.mark.parametrize(
    ("override", "section", "key", "expected"),
    [
        ("train.steps=200", "train", "steps", 200),
        ("train.seed=-3", "train", "seed", -3),
        ("optim.learning_rate=1e-4", "optim", "learning_rate", 1e-4),
        ("optim.learning_rate=1.0e-4", "optim", "learning_rate", 1e-4),
        ("optim.learning_rate=2E-5", "optim", "learning_rate", 2e-5),
        ("optim.learning_rate=3", "optim", "learning_rate", 3.0),
        ("optim.weight_decay=0", "optim", "weight_decay", 0.0),
        ("masking.mask_prob=0.2", "masking", "mask_prob", 0.2),
        ("masking.whole_word_mask=true", "masking", "whole_word_mask", True),
        ("masking.whole_word_mask=false", "masking", "whole_word_mask", False),
        ("parallel.distributed=True", "parallel", "distributed", True),
        ("masking.max_predictions=null", "masking", "max_predictions", None),
        ("masking.max_predictions=12", "masking", "max_predictions", 12),
        ("train.objectives=[mlm]", "train", "objectives", ("mlm",)),
        ("train.objectives=[nsp, mlm]", "train", "objectives", ("nsp", "mlm")),
        ("train.objectives=mlm", "train", "objectives", ("mlm",)),
        ("data.path=x.txt", "data", "path", ("x.txt",)),
        ("data.path=[a.txt, b/*.txt]", "data", "path", ("a.txt", "b/*.txt")),
        ("data.path=[]", "data", "path", ()),
        ("model.init=", "model", "init", ""),
        ("model.init= ", "model", "init", ""),
        ("model.dtype=bfloat16", "model", "dtype", "bfloat16"),
        ("data.documents=blank_line", "data", "documents", "blank_line"),
        ("data.cache_dir=/tmp/some where", "data", "cache_dir", "/tmp/some where"),
        ("tokenizer.name=a=b", "tokenizer", "name", "a=b"),  # only the first '=' splits
    ],
)
def test_override_values(override: str, section: str, key: str, expected: object) -> None:
    config = load_config(None, [override])
    value = getattr(getattr(config, section), key)
    assert value == expected
    assert type(value) is type(expected)


def test_float_fields_are_floats_even_from_yaml_ints(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  learning_rate: 1e-4\n  clip_norm: 2\n", encoding="utf-8")
    optim = load_config(path).optim
    assert optim.learning_rate == 1e-4 and isinstance(optim.learning_rate, float)
    assert optim.clip_norm == 2.0 and isinstance(optim.clip_norm, float)


def test_parse_override() -> None:
    assert parse_override("train.steps=5") == ("train", "steps", 5)
    assert parse_override(" train.steps =5") == ("train", "steps", 5)
    assert parse_override("model.init=") == ("model", "init", None)
    assert parse_override("data.path=[a, b]") == ("data", "path", ["a", "b"])


def test_sections_are_validated_from_python_too() -> None:
    with pytest.raises(UserError, match=r"train\.steps"):
        TrainConfig(steps="5")  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"data\.max_seq_len"):
        Config(data=DataConfig(max_seq_len=1024), model=dataclasses.replace(Config().model, init=""))
    assert DataConfig(path=["a.txt"]).path == ("a.txt",)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Bad input


def test_unknown_section_lists_sections() -> None:
    message = _error(["trian.steps=5"])
    assert "trian" in message
    for name in SECTIONS:
        assert name in message


def test_unknown_section_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optimiser:\n  name: adamw\n", encoding="utf-8")
    message = _error(path=path)
    assert "optimiser" in message and "optim" in message


@pytest.mark.parametrize(
    ("override", "section"),
    [("train.stepz=5", "train"), ("data.max_len=64", "data"), ("optim.lr=1e-3", "optim"), ("masking.prob=0.1", "masking")],
)
def test_unknown_key_lists_valid_keys(override: str, section: str) -> None:
    message = _error([override])
    key = override.partition("=")[0]
    assert key in message
    for field in dataclasses.fields(SECTIONS[section]):
        assert field.name in message


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("train.steps=abc", "train.steps", ["integer", "abc"]),
        ("train.steps=1.5", "train.steps", ["integer", "1.5"]),
        ("train.steps=true", "train.steps", ["integer", "True"]),
        ("train.batch_size=[8]", "train.batch_size", ["integer"]),
        ("data.max_seq_len=null", "data.max_seq_len", ["integer"]),
        ("masking.whole_word_mask=1", "masking.whole_word_mask", ["true or false", "1"]),
        ("masking.whole_word_mask=0.0", "masking.whole_word_mask", ["true or false"]),
        ("masking.whole_word_mask=maybe", "masking.whole_word_mask", ["true or false", "maybe"]),
        ("parallel.distributed=2", "parallel.distributed", ["true or false"]),
        ("optim.learning_rate=fast", "optim.learning_rate", ["number", "fast"]),
        ("optim.learning_rate=true", "optim.learning_rate", ["number"]),
        ("optim.learning_rate=inf", "optim.learning_rate", ["finite"]),
        ("optim.learning_rate=.nan", "optim.learning_rate", ["finite"]),
        ("tokenizer.name=[a, b]", "tokenizer.name", ["string"]),
        ("data.path=[{a: 1}]", "data.path[0]", ["string"]),
        ("data.path={a: 1}", "data.path", ["list"]),
        ("train.objectives=5", "train.objectives", ["list"]),
    ],
)
def test_wrong_type_names_the_key(override: str, key: str, words: list[str]) -> None:
    message = _error([override])
    assert key in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("override", "key", "choices"),
    [
        ("model.dtype=float16", "model.dtype", ["float32", "bfloat16"]),
        ("optim.name=sgd", "optim.name", ["adamw", "lamb"]),
        ("optim.schedule=step", "optim.schedule", ["linear", "cosine"]),
        ("data.documents=paragraph", "data.documents", ["line", "blank_line"]),
        ("data.pairing=pairs", "data.pairing", ["segments", "sentences"]),
        ("parallel.mode=pjit", "parallel.mode", ["jit", "pmap"]),
        ("model.preset=huge", "model.preset", list(MODEL_PRESETS)),
        ("train.objectives=[mlm, sop]", "train.objectives", ["mlm", "nsp"]),
        ("train.objectives=[]", "train.objectives", ["mlm", "nsp"]),
    ],
)
def test_value_out_of_choices(override: str, key: str, choices: list[str]) -> None:
    message = _error([override])
    assert key in message
    for choice in choices:
        assert choice in message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("masking.mask_prob=1.5", "masking.mask_prob"),
        ("masking.mask_prob=0", "masking.mask_prob"),
        ("masking.mask_prob=-0.1", "masking.mask_prob"),
        ("masking.mask_replace_prob=1.01", "masking.mask_replace_prob"),
        ("masking.random_replace_prob=-0.1", "masking.random_replace_prob"),
        ("data.short_seq_prob=2", "data.short_seq_prob"),
        ("data.eval_fraction=1", "data.eval_fraction"),
        ("data.eval_fraction=-0.5", "data.eval_fraction"),
    ],
)
def test_probabilities_out_of_range(override: str, key: str) -> None:
    message = _error([override])
    assert key in message


def test_probability_edges_are_accepted() -> None:
    config = load_config(
        None,
        ["masking.mask_prob=1", "masking.mask_replace_prob=0", "masking.random_replace_prob=1", "data.short_seq_prob=0", "data.eval_fraction=0"],
    )
    assert config.masking.mask_prob == 1.0 and config.data.eval_fraction == 0.0


def test_replace_probabilities_must_sum_to_at_most_one() -> None:
    message = _error(["masking.mask_replace_prob=0.8", "masking.random_replace_prob=0.3"])
    assert "masking.mask_replace_prob" in message and "masking.random_replace_prob" in message
    # Exactly 1 is fine (no token kept), including float round-off.
    config = load_config(None, ["masking.mask_replace_prob=0.7", "masking.random_replace_prob=0.3"])
    assert config.masking.random_replace_prob == pytest.approx(0.3)


def test_max_seq_len_beyond_preset_positions() -> None:
    message = _error(["data.max_seq_len=1024", "model.init="])
    assert "data.max_seq_len" in message and "512" in message and "1024" in message
    assert load_config(None, ["data.max_seq_len=512", "model.init="]).data.max_seq_len == 512


def test_building_a_config_reads_no_file(tmp_path: Path) -> None:
    """A checkpoint's positions are checked where it is loaded (test_model.py), not by the config."""
    config = load_config(None, ["data.max_seq_len=1024", f"model.init={tmp_path / 'no_such_model'}"])
    assert config.data.max_seq_len == 1024


@pytest.mark.parametrize("key", ["train_path", "eval_path", "dataset_eval_split", "text_pair_column", "label_column"])
def test_fine_tuning_data_keys_live_in_finetune_only(key: str) -> None:
    assert getattr(load_config(None, [f"finetune.{key}=x"]).finetune, key) == "x"
    message = _error([f"data.{key}=x"])
    assert f"unknown key 'data.{key}'" in message and "valid keys of data" in message


def test_max_predictions_beyond_sequence() -> None:
    message = _error(["masking.max_predictions=200", "data.max_seq_len=128"])
    assert "masking.max_predictions" in message and "128" in message
    assert "masking.max_predictions" in _error(["masking.max_predictions=0"])


def test_batch_size_must_divide_by_grad_accum_steps() -> None:
    message = _error(["train.batch_size=10", "train.grad_accum_steps=3"])
    assert "train.batch_size" in message and "grad_accum_steps" in message
    config = load_config(None, ["train.batch_size=12", "train.grad_accum_steps=3"])
    assert config.train.batch_size == 12


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.steps=0", "train.steps"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.grad_accum_steps=0", "train.grad_accum_steps"),
        ("data.max_seq_len=4", "data.max_seq_len"),
        ("tokenizer.vocab_size=10", "tokenizer.vocab_size"),
        ("tokenizer.min_frequency=0", "tokenizer.min_frequency"),
        ("optim.learning_rate=0", "optim.learning_rate"),
        ("optim.warmup_steps=-1", "optim.warmup_steps"),
        ("checkpoint.keep=0", "checkpoint.keep"),
        ("eval.every=0", "eval.every"),
        ("log.every=0", "log.every"),
        ("model.attention_dropout=1", "model.attention_dropout"),
        ("model.attention_dropout=-0.1", "model.attention_dropout"),
    ],
)
def test_out_of_range_numbers(override: str, key: str) -> None:
    assert key in _error([override])


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["model.scan_layers=true"], ["model.scan_layers", "model.impl=fast"]),
        (["model.remat=dots"], ["model.remat", "dots", "model.impl=fast", "none or full"]),
        (["model.remat=partial"], ["model.remat", "none", "full", "dots"]),
    ],
)
def test_fast_path_combinations_hf_cannot_run(overrides: list[str], words: list[str]) -> None:
    message = _error(overrides)
    assert all(word in message for word in words), message


def test_fast_path_combinations_that_are_allowed() -> None:
    fused = load_config(None, ["model.impl=fast", "model.scan_layers=true", "model.remat=dots", "model.attention_dropout=0"])
    assert (fused.model.impl, fused.model.scan_layers, fused.model.remat, fused.model.attention_dropout) == (
        "fast", True, "dots", 0.0
    )
    explicit = load_config(None, ["model.impl=fast", "model.attention_dropout=0.1"])  # probabilities materialised
    assert explicit.model.attention_dropout == 0.1
    assert load_config(None, ["model.remat=full"]).model.impl == "hf"  # transformers' gradient_checkpointing
    assert load_config(None, []).model.attention_dropout is None  # the checkpoint's own rate


def test_tokenizer_needs_a_name_unless_trained() -> None:
    assert "tokenizer.name" in _error(["tokenizer.name="])
    assert load_config(None, ["tokenizer.name=", "tokenizer.train=true"]).tokenizer.train


@pytest.mark.parametrize("override", ["train.steps", "steps=3", "=3", "train.=3", ".steps=3", "train.steps.x=3", ""])
def test_malformed_override(override: str) -> None:
    message = _error([override])
    assert "section.key=value" in message
    assert repr(override) in message


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train: 5\n", encoding="utf-8")
    assert "'train'" in _error(path=path)
    assert "'train'" in _error(["train.steps=5"], path=path)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    message = _error(path=missing)
    assert str(missing) in message and "--config" in message


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    assert str(tmp_path) in _error(path=tmp_path)


def test_invalid_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  steps: [1, 2\n  seed: 0\n", encoding="utf-8")
    message = _error(path=path)
    assert str(path) in message and "YAML" in message
    assert "\n" not in message  # one line


def test_config_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model:\n  init: caf\xe9\n".encode("latin-1"))
    assert str(path) in _error(path=path)


@pytest.mark.parametrize("text", ["- train\n- data\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(text, encoding="utf-8")
    message = _error(path=path)
    assert str(path) in message and "mapping" in message


def test_config_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(UserError, match="mapping"):
        config_from_dict(["data"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Masking: prediction slots


def test_num_predictions_default() -> None:
    masking = MaskingConfig()
    assert masking.num_predictions(128) == 20
    assert masking.num_predictions(512) == 80
    assert masking.num_predictions(64) % 4 == 0
    assert masking.num_predictions(64) >= 64 * 0.15


def test_num_predictions_explicit_wins() -> None:
    masking = MaskingConfig(max_predictions=7)
    assert masking.num_predictions(128) == 7
    assert masking.num_predictions(512) == 7
    assert load_config(None, ["masking.max_predictions=76"]).masking.num_predictions(512) == 76


def test_num_predictions_follows_mask_prob() -> None:
    assert MaskingConfig(mask_prob=0.3).num_predictions(128) == 40  # 38.4 rounded up to a multiple of 4


def test_numbers_given_for_strings_are_read_as_text() -> None:
    # YAML reads `data.path=2024` as an int; a file or model called "2024" is still a name.
    config = load_config(None, ["data.path=2024", "tokenizer.name=123"])
    assert config.data.path == ("2024",)
    assert config.tokenizer.name == "123"


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["data.packing=true"], ["data.packing needs model.impl=fast"]),
        (["data.max_examples_per_row=0"], ["data.max_examples_per_row must be at least 1"]),
        (["data.packing=true", "model.impl=fast", "data.max_seq_len=9"], ["must hold two examples", "data.max_seq_len>=10"]),
        (
            ["data.packing=true", "model.impl=fast", "masking.max_predictions=20"],
            ["masking.max_predictions is 20", "can hold 30 predictions", "masking.max_predictions>=30"],
        ),
    ],
)
def test_packing_combinations_that_cannot_work(overrides: list[str], words: list[str]) -> None:
    message = _error(overrides)
    assert all(word in message for word in words), message


def test_packing_that_is_allowed() -> None:
    # MLM only: the shortest example is [CLS] A [SEP], so 6 positions hold two.
    load_config(None, ["data.packing=true", "model.impl=fast", "train.objectives=[mlm]", "data.max_seq_len=8"])
    config = load_config(None, ["data.packing=true", "model.impl=fast", "masking.max_predictions=30"])
    assert config.num_predictions == 30 and config.data.examples_per_row == 16


def test_packed_prediction_slots_bound_a_row() -> None:
    """k examples of m_i maskable tokens each get max(1, round(0.15 m_i)) predictions; a row of L positions
    holds k <= L // 3 examples with sum(m_i) <= L - 2k. By hand: 128, 16 examples: 0.15 × 96 + 16 = 30.4."""
    masking = MaskingConfig()
    assert masking.row_prediction_bound(128, 16) == 30 and masking.num_predictions(128, 16) == 32
    assert masking.row_prediction_bound(512, 16) == 88 and masking.num_predictions(512, 16) == 88
    # Tight: 5 examples of one maskable token in 15 positions make 5 predictions.
    assert masking.row_prediction_bound(16, 8) == 5
    # Brute force over every split of a small row into examples: the rule never selects more.
    for length in (12, 16):
        for k in range(1, length // 3 + 1):
            for maskable in itertools.product(range(1, length - 2 * k + 1), repeat=k):
                if sum(maskable) <= length - 2 * k:
                    selected = sum(max(1, math.floor(0.15 * m + 0.5 + 1e-9)) for m in maskable)
                    assert selected <= masking.row_prediction_bound(length, 8)
    one = load_config(None, ["data.packing=true", "model.impl=fast", "data.max_examples_per_row=1"])
    assert one.num_predictions == 20  # one example a row: the unpacked rule
