"""`bert-flax export`: a Hugging Face PyTorch directory from any model SOURCE, written atomically.

The directory holds config.json (architectures: the source's head class, BertForPreTraining unless
the source is a fine-tuned BertForSequenceClassification / BertForQuestionAnswering), model.safetensors
with PyTorch names and layouts, the tokenizer files and a README.md model card. Writing needs no torch;
`verify_export` (torch) loads it back and compares logits with the Flax model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import safetensors.flax

from bert_flax.disk import write_file
from bert_flax.errors import UserError
from bert_flax.interop.sources import LoadedModel, load_model_source
from bert_flax.interop.torch_state import EXPORT_DTYPES, to_torch_state
from bert_flax.model.architectures import Architecture, architecture_of, check_heads
from bert_flax.run.layout import RunDir
from bert_flax.run.metrics import last_events
from bert_flax.storage import AnyPath, GsPath, check_bucket, to_path, write_dir

WEIGHTS_FILE = "model.safetensors"


@dataclasses.dataclass
class ExportResult:
    out: AnyPath
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


def _model_card(loaded: LoadedModel, architecture: Architecture, dtype: str) -> str:
    name = architecture.name
    lines = [
        "---",
        "library_name: transformers",
        f"tags: [bert, {architecture.pipeline_tag}, bert-flax]",
        "---",
        "",
        f"# {architecture.card_title}",
        "",
        f"Exported from {loaded.description} as `{name}` weights in {dtype}.",
    ]
    if loaded.run_dir is not None:
        config_yaml = RunDir(loaded.run_dir).config.read_text(encoding="utf-8")
        summary = last_events(loaded.run_dir)
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
        architecture.card_note,
    ]
    return "\n".join(lines) + "\n"


def write_export(loaded: LoadedModel, directory: Path, dtype: str) -> int:
    """Write the PyTorch directory's files into `directory`; returns the number of tensors."""
    architecture = architecture_of(loaded.config)
    check_heads(architecture, loaded.params, loaded.description)
    tokenizer = loaded.load_tokenizer()  # checked before any weights are written
    state = to_torch_state(loaded.params, dtype)
    # save() and write_file, not save_file: safetensors creates its files 0600, whatever the umask
    write_file(directory / WEIGHTS_FILE, safetensors.flax.save(state, metadata={"format": "pt"}))
    config = _config_json(loaded, architecture, dtype)
    write_file(directory / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(directory)
    write_file(directory / "README.md", _model_card(loaded, architecture, dtype))
    return len(state)


def export(
    source: str, out: str | AnyPath, dtype: str = "float32", force: bool = False, verify: bool = False
) -> ExportResult:
    """Export SOURCE to `out`; a failure (or a failed `verify`) leaves `out` as it was."""
    if dtype not in EXPORT_DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(EXPORT_DTYPES)}; got {dtype!r}")
    out = to_path(out)
    if isinstance(out, GsPath):
        check_bucket(out, "--out", "choose another --out")
    if out.exists() and not force:
        raise UserError(f"{out} already exists; pass --force to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; choose a directory for --out")
    loaded = load_model_source(source)

    def fill(directory: Path) -> tuple[int, dict[str, float] | None]:
        num_tensors = write_export(loaded, directory, dtype)
        if not verify:
            return num_tensors, None
        from bert_flax.interop.verify import verify_export

        return num_tensors, verify_export(directory, loaded, dtype)

    num_tensors, verification = write_dir(out, fill, last=("config.json",))
    return ExportResult(out, loaded.description, dtype, num_tensors, verification)
