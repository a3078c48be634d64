"""`bert-flax export`: a Hugging Face PyTorch directory from any model SOURCE, written atomically.

The directory holds config.json (architectures: the source's head class, BertForPreTraining unless
the source is a fine-tuned BertForSequenceClassification / BertForQuestionAnswering), model.safetensors
with PyTorch names and layouts, the tokenizer files and a README.md model card. Writing needs no torch;
`verify_export` (torch) loads it back and compares logits with the Flax model.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import safetensors.flax

from bert_flax.architectures import Architecture, architecture_of, check_heads
from bert_flax.errors import UserError
from bert_flax.interop import EXPORT_DTYPES, to_torch_state
from bert_flax.sources import LoadedModel, load_model_source, run_summary

WEIGHTS_FILE = "model.safetensors"


@dataclasses.dataclass
class ExportResult:
    out: Path
    source: str
    dtype: str
    num_tensors: int
    verification: dict[str, float] | None = None


def _config_json(loaded: LoadedModel, architecture: Architecture, dtype: str) -> dict[str, Any]:
    config = loaded.config.to_dict()
    config["architectures"] = [architecture.name]
    config["torch_dtype"] = dtype  # transformers 4 reads torch_dtype, 5 reads dtype
    config["dtype"] = dtype
    for key in ("_name_or_path", "transformers_version"):
        config.pop(key, None)
    return config


TITLES = {
    "BertForPreTraining": "BERT pre-trained with bert-flax (MLM + NSP)",
    "BertForSequenceClassification": "BERT fine-tuned with bert-flax for sequence classification",
    "BertForQuestionAnswering": "BERT fine-tuned with bert-flax for extractive question answering",
}
NOTES = {
    "BertForPreTraining": "NSP labels follow Hugging Face: logit 0 = IsNext, 1 = NotNext.",
    "BertForSequenceClassification": "Labels: config.json's id2label.",
    "BertForQuestionAnswering": "Outputs start and end logits over the tokens of `[CLS] question [SEP] context [SEP]`.",
}


def _model_card(loaded: LoadedModel, architecture: Architecture, dtype: str) -> str:
    name = architecture.name
    lines = [
        "---",
        "library_name: transformers",
        f"tags: [bert, {architecture.pipeline_tag}, bert-flax]",
        "---",
        "",
        f"# {TITLES[name]}",
        "",
        f"Exported from {loaded.description} as `{name}` weights in {dtype}.",
    ]
    if loaded.run_dir is not None:
        config_yaml = (loaded.run_dir / "config.yaml").read_text(encoding="utf-8")
        summary = run_summary(loaded.run_dir)
        lines += ["", "## Training config", "", "```yaml", config_yaml.rstrip(), "```"]
        if "eval" in summary:
            shown = {k: v for k, v in summary["eval"].items() if k not in ("split", "elapsed_seconds")}
            lines += ["", "## Last held-out evaluation", "", "```json", json.dumps(shown, indent=2), "```"]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        f"from transformers import {name}, BertTokenizerFast",
        f'model = {name}.from_pretrained("DIR")',
        'tokenizer = BertTokenizerFast.from_pretrained("DIR")',
        "```",
        "",
        NOTES[name],
    ]
    return "\n".join(lines) + "\n"


def write_export(loaded: LoadedModel, directory: Path, dtype: str) -> int:
    """Write the PyTorch directory's files into `directory`; returns the number of tensors."""
    architecture = architecture_of(loaded.config)
    check_heads(architecture, loaded.params, loaded.description)
    tokenizer = loaded.load_tokenizer()  # checked before any weights are written
    state = to_torch_state(loaded.params, dtype)
    safetensors.flax.save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    config = _config_json(loaded, architecture, dtype)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(directory)
    (directory / "README.md").write_text(_model_card(loaded, architecture, dtype), encoding="utf-8")
    return len(state)


def export(
    source: str, out: str | Path, dtype: str = "float32", force: bool = False, verify: bool = False
) -> ExportResult:
    """Export SOURCE to `out`; a failure (or a failed `verify`) leaves `out` as it was."""
    if dtype not in EXPORT_DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(EXPORT_DTYPES)}; got {dtype!r}")
    out = Path(out)
    if out.exists() and not force:
        raise UserError(f"{out} already exists; pass --force to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; choose a directory for --out")
    loaded = load_model_source(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        num_tensors = write_export(loaded, tmp, dtype)
        verification = None
        if verify:
            from bert_flax.verify import verify_export

            verification = verify_export(tmp, loaded, dtype)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out, loaded.description, dtype, num_tensors, verification)
