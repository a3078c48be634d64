"""Fine-tuned heads end to end after training: export to PyTorch (exact keys, label maps, parity),
loading best/ and final/ with their heads, and `predict classify|qa` checked against the PyTorch export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from finetune_data import pair_questions, topic_rows, write_squad, write_topic_csv
from safetensors import safe_open
from test_export import load_clean
from test_finetune import tiny

from bert_flax.cli import main
from bert_flax.config import load_config
from bert_flax.finetune.predict import classify
from bert_flax.finetune.run import finetune
from bert_flax.interop.export import export
from bert_flax.interop.predict import Predictor
from bert_flax.interop.sources import load_model_source
from bert_flax.interop.verify import VerificationFailed, verify_export

TORCH_CLASS = {"classify": "BertForSequenceClassification", "qa": "BertForQuestionAnswering"}
HEAD = {"classify": "classifier", "qa": "qa_outputs"}
TEXTS = ["The gods are everywhere in nature.", "Death is nothing to fear.", "Live by reason."]


@pytest.fixture(scope="module")
def runs(minilm_dir: str, corpus_lines: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A classification run and a QA run of the tiny preset: 2 steps each, one eval (so best/ and final/)."""
    root = tmp_path_factory.mktemp("finetuned")
    rows, articles = topic_rows(corpus_lines), pair_questions(corpus_lines)
    data = {
        "classify": (write_topic_csv(rows[:200], root / "t.csv"), write_topic_csv(rows[200:264], root / "e.csv")),
        "qa": (write_squad(articles[:64], root / "t.json"), write_squad(articles[64:96], root / "e.json")),
    }
    qa = ["finetune.task=qa", "finetune.max_query_len=16", "finetune.doc_stride=16"]
    for task, more in (("classify", []), ("qa", qa)):
        config = load_config(None, tiny(minilm_dir, *data[task], "train.steps=2", "eval.every=2", *more))
        assert finetune(config, root / task, show_progress=False).finished
    return {task: root / task for task in data}


def saved_keys(torch_class: type, directory: Path, tmp_path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors PyTorch's own save_pretrained writes for `torch_class` on this config."""
    model = torch_class(transformers.BertConfig.from_pretrained(directory))
    model.save_pretrained(tmp_path / "reference")
    with safe_open(str(tmp_path / "reference" / "model.safetensors"), "np") as f:
        return {name: f.get_tensor(name).shape for name in f.keys()}


@pytest.mark.parametrize("task", ["classify", "qa"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_export_is_what_pytorch_writes_and_verifies(runs, tmp_path: Path, task: str, dtype: str) -> None:
    out = tmp_path / "pt"
    result = export(str(runs[task]), out, dtype=dtype, verify=True)
    diffs = [value for key, value in result.verification.items() if key.endswith("_max_abs_diff")]
    assert len(diffs) == (1 if task == "classify" else 2)  # logits / start + end
    if dtype == "float32":
        assert max(diffs) <= 1e-4 == result.verification["tolerance"]
    else:
        assert 0 < max(diffs) <= result.verification["tolerance"] < 0.5
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [TORCH_CLASS[task]]
    torch_class = getattr(transformers, TORCH_CLASS[task])
    with safe_open(str(out / "model.safetensors"), "np") as f:
        written = {name: f.get_tensor(name).shape for name in f.keys()}
    assert written == saved_keys(torch_class, out, tmp_path)
    assert ("bert.pooler.dense.weight" in written) == (task == "classify")  # HF's QA model has no pooler
    model, problems = load_clean(torch_class, out)
    assert problems == {}
    assert not any(p.is_meta for p in model.parameters())
    assert f"`{TORCH_CLASS[task]}`" in (out / "README.md").read_text()


@pytest.mark.parametrize("task", ["classify", "qa"])
def test_verify_catches_a_swapped_head(runs, tmp_path: Path, task: str) -> None:
    """Head rows in the wrong order (labels permuted; QA start and end swapped) must fail verification."""
    from safetensors.torch import load_file, save_file

    out = tmp_path / "pt"
    export(str(runs[task]), out)
    state = load_file(str(out / "model.safetensors"))
    for name in (f"{HEAD[task]}.weight", f"{HEAD[task]}.bias"):
        state[name] = state[name].flip(0).contiguous()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(VerificationFailed, match="differ"):
        verify_export(out, load_model_source(str(runs[task])), "float32")


def test_classification_export_keeps_the_label_maps(runs, tmp_path: Path, capsys) -> None:
    run = runs["classify"]
    labels = json.loads((run / "labels.json").read_text())["labels"]
    assert main(["export", str(run / "best"), "--out", str(tmp_path / "pt"), "--dtype", "float16", "--verify"]) == 0
    assert "verified with PyTorch transformers: max |Δ logits| LOGITS" in capsys.readouterr().out
    config = json.loads((tmp_path / "pt" / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(labels)}
    assert config["label2id"] == {label: i for i, label in enumerate(labels)}
    model, problems = load_clean(transformers.BertForSequenceClassification, tmp_path / "pt")
    assert problems == {} and model.config.id2label[0] == labels[0]


@pytest.mark.parametrize("task", ["classify", "qa"])
def test_best_and_final_load_with_their_trained_heads(runs, task: str) -> None:
    """A save_pretrained directory of a head class loads that head, not a re-initialised one (seed differs)."""
    checkpoint = load_model_source(str(runs[task])).params
    for name in ("best", "final"):
        loaded = load_model_source(str(runs[task] / name), seed=123)
        assert loaded.config.architectures == [TORCH_CLASS[task]]
        assert sorted(loaded.params) == sorted(checkpoint)
        np.testing.assert_array_equal(loaded.params[HEAD[task]]["kernel"], checkpoint[HEAD[task]]["kernel"])


def test_predict_classify_agrees_with_the_pytorch_export(runs, tmp_path: Path, capsys) -> None:
    run = runs["classify"]
    labels = json.loads((run / "labels.json").read_text())["labels"]
    pair = ("Reason rules the soul.", "The gods approve.")
    inputs = tmp_path / "texts.txt"
    inputs.write_text("\n".join([*TEXTS, "\t".join(pair)]) + "\n")
    assert main(["predict", "classify", "--model", str(run / "final"), "--file", str(inputs), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == [*TEXTS, pair[0]] and records[-1]["pair"] == pair[1]
    assert all(r["label"] in labels and 0 < r["probability"] <= 1 for r in records)

    export(str(run), tmp_path / "pt")
    model = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "pt").eval()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(tmp_path / "pt")
    with torch.no_grad():
        probs_BxC = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.softmax(-1).numpy()
    results = classify(Predictor(str(run)), TEXTS)
    assert [r["label"] for r in results] == [labels[i] for i in probs_BxC.argmax(-1)]
    np.testing.assert_allclose([r["probability"] for r in results], probs_BxC.max(-1), rtol=1e-4)
    assert [r["label"] for r in records[:3]] == [r["label"] for r in results]


def test_predict_qa_answers_are_spans_of_the_context(runs, corpus_lines: list[str], tmp_path: Path, capsys) -> None:
    context = " ".join(corpus_lines[:8])  # longer than one 64-token window
    (tmp_path / "context.txt").write_text(context)
    questions = ['Which two words start with "Nature"?', "Who is happy?"]
    args = ["predict", "qa", "--model", str(runs["qa"]), "--context-file", str(tmp_path / "context.txt"), "--json"]
    assert main([*args, *questions]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["question"] for r in records] == questions
    for record in records:
        assert record["answer"] and record["answer"] in context
        assert context[record["start"] : record["end"]] == record["answer"] and np.isfinite(record["score"])
    assert main(["predict", "qa", "--model", str(runs["qa"] / "best"), "--context", context, questions[0]]) == 0
    answer, score = capsys.readouterr().out.rstrip("\n").split("\t")
    assert answer == records[0]["answer"] and float(score) == pytest.approx(records[0]["score"], abs=1e-3)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["classify", "--model", "PRETRAIN", "A text."], "has pre-training heads (MLM + NSP) (BertForPreTraining)"),
        (["qa", "--model", "CLASSIFY", "--context", "Some text.", "Why?"], "needs a question-answering head"),
        (["fill-mask", "--model", "QA", "A [MASK]."], "needs pre-training heads"),
        (["qa", "--model", "QA", "--context", "  ", "Why?"], "the context is empty"),
        (["classify", "--model", "CLASSIFY"], "no input"),
    ],
)
def test_bad_input(runs, smoke_run: Path, capsys, args: list[str], fragment: str) -> None:
    sources = {"PRETRAIN": str(smoke_run), "CLASSIFY": str(runs["classify"]), "QA": str(runs["qa"])}
    assert main(["predict", *[sources.get(a, a) for a in args]]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err


def test_pretraining_can_start_from_a_fine_tuned_model(runs, minilm_dir: str) -> None:
    """model.init=a fine-tuned model keeps its encoder; the pre-training heads (and QA's missing pooler) start fresh."""
    from bert_flax.interop.model_init import build_model

    for source, fresh in ((runs["classify"] / "best", 2), (runs["qa"], 3)):
        overrides = [f"model.init={source}", f"tokenizer.name={minilm_dir}", "tokenizer.train=false"]
        built = build_model(load_config(None, [*overrides, "data.max_seq_len=64"]), 30522)
        assert len(built.initialized_heads) == fresh and built.config.architectures == ["BertForPreTraining"]
        layer = ("encoder", "layer", "1", "output", "dense", "kernel")
        got, want = built.params["bert"], load_model_source(str(source)).params["bert"]
        for key in layer:
            got, want = got[key], want[key]
        np.testing.assert_array_equal(got, want)
