"""Exports load in transformers 5 (PyTorch only) with logits parity; CI provides that environment."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from transformers import FlaxBertForPreTraining

from bert_flax.config import load_config
from bert_flax.interop.export import export
from bert_flax.interop.sources import load_model_source
from bert_flax.pretrain import pretrain

PYTHON = os.environ.get("BERT_FLAX_TRANSFORMERS5_PYTHON", "")


@pytest.mark.slow
@pytest.mark.skipif(not PYTHON, reason="set BERT_FLAX_TRANSFORMERS5_PYTHON to a python with transformers>=5 and torch")
def test_export_loads_in_transformers5_with_logits_parity(corpus_path: Path, tmp_path: Path) -> None:
    config = load_config(
        REPO_ROOT / "configs" / "smoke.yaml", [f"data.path={corpus_path}", f"data.cache_dir={tmp_path / 'cache'}"]
    )
    pretrain(config, tmp_path / "run", show_progress=False)
    export(str(tmp_path / "run"), tmp_path / "pt")
    script = Path(__file__).with_name("transformers5_load.py")
    done = subprocess.run(
        [PYTHON, str(script), str(tmp_path / "pt"), str(tmp_path / "logits.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert int(report["transformers"].split(".")[0]) >= 5
    assert report["BertForPreTraining"] == {"problems": {}, "meta": False, "warnings": []}
    for name in ("BertForMaskedLM", "BertModel"):  # other heads are unexpected there; nothing may be missing
        assert "missing_keys" not in report[name]["problems"] and not report[name]["meta"]
    torch_out = np.load(tmp_path / "logits.npz")
    loaded = load_model_source(str(tmp_path / "run"))
    batch = {key: torch_out[key] for key in ("input_ids", "token_type_ids", "attention_mask")}
    flax_out = FlaxBertForPreTraining(loaded.config, _do_init=False)(**batch, params=loaded.params)
    np.testing.assert_allclose(torch_out["prediction_logits"], flax_out.prediction_logits, atol=1e-4)
    np.testing.assert_allclose(torch_out["seq_relationship_logits"], flax_out.seq_relationship_logits, atol=1e-4)
