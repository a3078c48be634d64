"""Export to PyTorch (names, layouts, tied weights, dtypes, atomic writes), import round trip, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open

from bert_flax.cli import main
from bert_flax.interop.export import export
from bert_flax.interop.sources import load_model_source
from bert_flax.interop.verify import verify_export


@pytest.fixture(scope="module")
def run_dir(smoke_run: Path) -> Path:
    """A finished smoke run (4 steps, checkpoints at 2 and 4)."""
    return smoke_run


def load_clean(cls: type, directory: Path) -> tuple[torch.nn.Module, dict]:
    """Load with transformers, capturing its weight warnings; return (model, non-empty loading-info entries)."""
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("transformers.modeling_utils")
    logger.addHandler(handler)
    try:
        model, info = cls.from_pretrained(directory, output_loading_info=True)
    finally:
        logger.removeHandler(handler)
    problems = {key: value for key, value in info.items() if value}
    if any("newly initialized" in r or "were not used" in r for r in records):
        problems["warnings"] = records
    return model.eval(), problems


def test_export_writes_what_pytorch_save_pretrained_writes(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pt"
    result = export(str(run_dir), out, verify=True)
    assert result.verification["mlm_max_abs_diff"] <= 1e-4 and result.verification["nsp_max_abs_diff"] <= 1e-4
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "tokenizer.json",
        "README.md",
    }
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    reference = transformers.BertForPreTraining(transformers.BertConfig.from_pretrained(out))
    with safe_open(str(out / "model.safetensors"), "np") as f:
        names = set(f.keys())
        shapes = {name: f.get_tensor(name).shape for name in names}
    # PyTorch's save_pretrained drops the tied decoder weight and the decoder bias alias.
    expected = set(reference.state_dict()) - {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    assert names == expected
    assert all(shapes[n] == tuple(reference.state_dict()[n].shape) for n in names)  # kernels transposed
    model, problems = load_clean(transformers.BertForPreTraining, out)
    assert problems == {}
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    assert "step 4" in (out / "README.md").read_text()


@pytest.mark.parametrize("cls", ["BertForMaskedLM", "BertModel"])
def test_other_bert_classes_load_the_export(run_dir: Path, tmp_path: Path, cls: str) -> None:
    export(str(run_dir), tmp_path / "pt")
    _, problems = load_clean(getattr(transformers, cls), tmp_path / "pt")
    assert not problems.get("missing_keys") and not problems.get("mismatched_keys")


def test_sources_run_step_and_flax_directory_agree(run_dir: Path) -> None:
    latest = load_model_source(str(run_dir))
    step4 = load_model_source(str(run_dir / "checkpoints" / "4"))
    final = load_model_source(str(run_dir / "final"))
    step2 = load_model_source(str(run_dir / "checkpoints" / "2"))
    assert (latest.step, step4.step, step2.step) == (4, 4, 2)
    word = ("bert", "embeddings", "word_embeddings", "embedding")

    def get(loaded):
        tree = loaded.params
        for key in word:
            tree = tree[key]
        return np.asarray(tree)

    np.testing.assert_array_equal(get(latest), get(final))
    np.testing.assert_array_equal(get(latest), get(step4))
    assert not np.array_equal(get(latest), get(step2))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_exports_verify_within_the_stated_tolerance(run_dir: Path, tmp_path: Path, dtype: str) -> None:
    result = export(str(run_dir), tmp_path / dtype, dtype=dtype, verify=True)
    assert 0 < result.verification["mlm_max_abs_diff"] <= result.verification["tolerance"] < 0.5
    with safe_open(str(tmp_path / dtype / "model.safetensors"), "pt") as f:
        assert f.get_tensor("bert.embeddings.word_embeddings.weight").dtype == getattr(torch, dtype)


def test_minilm_round_trip_reproduces_the_encoder(minilm_dir: str, tmp_path: Path) -> None:
    """MiniLM (PyTorch) → Flax → export → PyTorch gives the original encoder outputs within 1e-5."""
    export(minilm_dir, tmp_path / "pt")
    original = transformers.BertModel.from_pretrained(minilm_dir).eval()
    exported, problems = load_clean(transformers.BertModel, tmp_path / "pt")
    assert not problems.get("missing_keys")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    inputs = tokenizer(
        ["Waste no more time arguing what a good man should be.", "Be one."], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        expected, got = original(**inputs).last_hidden_state, exported(**inputs).last_hidden_state
    assert float((expected - got).abs().max()) < 1e-5


def test_verify_catches_a_wrong_export(run_dir: Path, tmp_path: Path) -> None:
    """A transposition error in the export must fail verification (the check can fail)."""
    from safetensors.torch import load_file, save_file

    out = tmp_path / "pt"
    export(str(run_dir), out)
    state = load_file(str(out / "model.safetensors"))
    name = "bert.encoder.layer.0.attention.self.query.weight"
    state[name] = state[name].T.contiguous()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(Exception, match="differ"):
        verify_export(out, load_model_source(str(run_dir)), "float32")


def cli(*args: str) -> int:
    return main(["export", *args])


def test_destination_exists_is_refused_and_kept(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pt"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert cli(str(run_dir), "--out", str(out)) == 2
    assert "--force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert cli(str(run_dir), "--out", str(out), "--force") == 0
    assert (out / "model.safetensors").is_file() and not (out / "mine.txt").exists()


@pytest.mark.parametrize(
    "source, fragment",
    [("missing-dir/", "cannot load model"), ("EMPTY", "is not a model: no config.json"), ("FILE", "is a file")],
)
def test_bad_source(tmp_path: Path, capsys, monkeypatch, source: str, fragment: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if source == "EMPTY":
        source = str(tmp_path / "empty")
        Path(source).mkdir()
    elif source == "FILE":
        source = str(tmp_path / "weights.txt")
        Path(source).write_text("x")
    assert cli(source, "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_unsupported_dtype(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert cli(str(run_dir), "--out", str(tmp_path / "out"), "--dtype", "int8") == 2
    assert "int8" in capsys.readouterr().err


def test_mismatched_tokenizer_leaves_nothing_behind(run_dir: Path, minilm_dir: str, tmp_path: Path, capsys) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    shutil.rmtree(run / "tokenizer")
    transformers.BertTokenizerFast.from_pretrained(minilm_dir).save_pretrained(run / "tokenizer")  # 30522 tokens
    assert cli(str(run), "--out", str(tmp_path / "out")) == 2
    assert "do not belong together" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no out, no temporary directory


def test_bin_that_is_not_a_state_dict(tmp_path: Path, minilm_dir: str, capsys) -> None:
    model_dir = tmp_path / "bin_model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(Path(minilm_dir, "config.json").read_text())
    torch.save({"weights": [1, 2, 3], "step": 7}, model_dir / "pytorch_model.bin")
    assert cli(str(model_dir), "--out", str(tmp_path / "out")) == 2
    assert "not a plain state dict" in capsys.readouterr().err


def test_model_init_accepts_a_run_and_a_pytorch_export(
    run_dir: Path, tmp_path: Path, corpus_path: Path, smoke_cache: Path
) -> None:
    """Continued pre-training can start from one of our runs or from its PyTorch export, all heads included."""
    from conftest import smoke_config

    from bert_flax.interop.model_init import build_model

    export(str(run_dir), tmp_path / "pt")
    final = load_model_source(str(run_dir / "final")).params
    for init in (str(run_dir), str(tmp_path / "pt")):
        built = build_model(smoke_config(corpus_path, smoke_cache, f"model.init={init}"), 1000)
        assert built.initialized_heads == ()
        np.testing.assert_allclose(built.params["cls"]["predictions"]["bias"], final["cls"]["predictions"]["bias"])
        np.testing.assert_allclose(
            built.params["bert"]["encoder"]["layer"]["1"]["output"]["dense"]["kernel"],
            final["bert"]["encoder"]["layer"]["1"]["output"]["dense"]["kernel"],
            atol=1e-7,
        )


def test_plain_bin_state_dict_loads_like_safetensors(tmp_path: Path, minilm_dir: str) -> None:
    """A `.bin`-only PyTorch directory is read through torch.load(weights_only=True) and equals the safetensors one."""
    from safetensors.torch import load_file

    model_dir = tmp_path / "bin_model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(Path(minilm_dir, "config.json").read_text())
    torch.save(load_file(str(Path(minilm_dir, "model.safetensors"))), model_dir / "pytorch_model.bin")
    from_bin = load_model_source(str(model_dir)).params["bert"]["embeddings"]["word_embeddings"]["embedding"]
    from_safetensors = load_model_source(minilm_dir).params["bert"]["embeddings"]["word_embeddings"]["embedding"]
    np.testing.assert_array_equal(from_bin, from_safetensors)
