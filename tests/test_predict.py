"""fill-mask and next-sentence against an independent HF forward pass; CLI input handling and errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax
import numpy as np
import pytest
from transformers import BertTokenizerFast, FlaxBertForPreTraining

from bert_flax.cli import main
from bert_flax.interop.predict import Predictor, fill_mask, next_sentence


@pytest.fixture(scope="module")
def predictor(smoke_run: Path) -> Predictor:
    return Predictor(str(smoke_run))


@pytest.fixture(scope="module")
def reference(smoke_run: Path) -> tuple[FlaxBertForPreTraining, BertTokenizerFast]:
    """The run's final/ through plain transformers: what our predictions must agree with."""
    return FlaxBertForPreTraining.from_pretrained(smoke_run / "final"), BertTokenizerFast.from_pretrained(
        smoke_run / "final"
    )


def test_fill_mask_matches_the_hf_forward(predictor: Predictor, reference) -> None:
    text = "The soul is [MASK] by its [MASK]."
    (masks,) = fill_mask(predictor, [text], top_k=3)
    assert len(masks) == 2 and all(len(candidates) == 3 for candidates in masks)
    model, tokenizer = reference
    inputs = tokenizer([text], return_tensors="np")
    logits_LxV = np.asarray(model(**inputs).prediction_logits[0])
    positions = np.flatnonzero(inputs["input_ids"][0] == tokenizer.mask_token_id)
    for position, candidates in zip(positions, masks):
        probs_V = np.asarray(jax.nn.softmax(logits_LxV[position]))
        assert [c["id"] for c in candidates] == list(np.argsort(-probs_V)[:3])
        np.testing.assert_allclose([c["probability"] for c in candidates], np.sort(probs_V)[::-1][:3], rtol=1e-4)
        assert candidates[0]["token"] == tokenizer.convert_ids_to_tokens(int(np.argmax(probs_V)))


def test_next_sentence_uses_hf_label_order(predictor: Predictor, reference) -> None:
    pairs = [("Waste no more time.", "Be good."), ("The universe is change.", "Our life is what our thoughts make it.")]
    results = next_sentence(predictor, pairs)
    model, tokenizer = reference
    inputs = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="np")
    probs_Bx2 = np.asarray(jax.nn.softmax(model(**inputs).seq_relationship_logits, axis=-1))
    for result, probs in zip(results, probs_Bx2):
        assert result["is_next_probability"] == pytest.approx(probs[0], rel=1e-4)  # index 0 = IsNext
        assert result["label"] == ("IsNext" if probs[0] >= probs[1] else "NotNext")
        assert result["probability"] == pytest.approx(probs.max(), rel=1e-4)


def test_long_text_is_truncated_with_a_warning(predictor: Predictor, caplog: pytest.LogCaptureFixture) -> None:
    text = "[MASK] " + "virtue " * 600
    with caplog.at_level(logging.WARNING, logger="bert_flax.interop.predict"):
        (masks,) = fill_mask(predictor, [text], top_k=1)
    assert len(masks) == 1
    assert any("truncated" in record.getMessage() for record in caplog.records)


def test_cli_batches_a_file_and_prints_json(smoke_run: Path, tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "texts.txt"
    inputs.write_text("\n".join(f"Sentence {i} is about [MASK]." for i in range(40)) + "\n")
    assert (
        main(["predict", "fill-mask", "--model", str(smoke_run), "--file", str(inputs), "--json", "--top-k", "2"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 40  # more than one batch of 32
    record = json.loads(lines[-1])
    assert record["text"] == "Sentence 39 is about [MASK]." and len(record["masks"][0]) == 2
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("A first sentence.\tA second one.\nAnother.\tAnd more.\n")
    assert main(["predict", "next-sentence", "--model", str(smoke_run), "--file", str(pairs), "--json"]) == 0
    assert [json.loads(line)["label"] in ("IsNext", "NotNext") for line in capsys.readouterr().out.splitlines()] == [
        True,
        True,
    ]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["fill-mask", "No mask in this one."], "has no [MASK]"),
        (["fill-mask", "A [MASK].", "--top-k", "0"], "--top-k"),
        (["next-sentence", "only one sentence"], "two sentences"),
        (["fill-mask"], "no input"),
    ],
)
def test_bad_input(smoke_run: Path, capsys, args: list[str], fragment: str) -> None:
    assert main(["predict", args[0], "--model", str(smoke_run), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_missing_model(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["predict", "fill-mask", "--model", str(tmp_path / "nope"), "A [MASK]."]) == 2
    assert "cannot load model" in capsys.readouterr().err
