"""scripts/bench_pytorch.py: the PyTorch throughput baseline runs end to end and counts FLOPs as documented."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_pytorch.py"
SETUP = {"backend", "device_kind", "preset", "layers", "hidden", "vocab_size", "dtype", "compile", "batch_size"}
SETUP |= {"max_seq_len", "num_predictions", "steps", "warmup", "model_flops_per_token", "peak_tflops_per_device"}
RESULT = {"first_step_seconds", "step_seconds_median", "step_seconds_p10", "step_seconds_p90", "tokens_per_second"}
RESULT |= {"sequences_per_second", "model_tflops_per_second", "mfu", "device_peak_bytes", "host_peak_rss_bytes"}


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_pytorch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_prints_one_json_record() -> None:
    argv = "--preset tiny --seq-len 32 --batch-size 4 --steps 2 --warmup 1 --vocab-size 1000 --json".split()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *argv, "--device", "cpu"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert SETUP <= result.keys(), SETUP - result.keys()
    timing = result["pytorch"]
    assert RESULT <= timing.keys(), RESULT - timing.keys()
    assert (result["layers"], result["hidden"], result["max_seq_len"], result["batch_size"]) == (2, 128, 32, 4)
    assert result["num_predictions"] == 8  # 4 × ceil(32 × 0.15 / 4)
    assert result["steps"] == 2 and timing["mfu"] is None
    assert timing["tokens_per_second"] > 0
    assert timing["sequences_per_second"] == pytest.approx(timing["tokens_per_second"] / 32)
    assert timing["step_seconds_p10"] <= timing["step_seconds_median"] <= timing["step_seconds_p90"]
    assert timing["device_peak_bytes"] is None and timing["host_peak_rss_bytes"] > 0


def test_flops_per_token_base_by_hand() -> None:
    bench = _load_script()
    predictions = bench.predictions_per_sequence(128, 0.15)
    assert predictions == 20  # 4 × ceil(19.2 / 4)
    # Encoder layer: 12·768² + 13·768 = 7,087,872; × 12 layers = 85,054,464 (no embeddings, pooler or NSP head).
    dense = 6 * 85_054_464  # 510,326,784
    attention = 12 * 12 * 128 * 768  # 14,155,776
    mlm_head = 6 * (768 * 768 + 768 * 30522) * 20 / 128  # 6 × 24,030,720 × 20 / 128 = 22,528,800
    assert dense + attention + mlm_head == 547_011_360  # "547.0 M" in bert_flax.model.flops
    assert bench.flops_per_token(12, 768, 128, 30522, predictions) == 547_011_360


def test_synthetic_batch_masks_p_plain_positions_per_row() -> None:
    bench = _load_script()
    batch = bench.synthetic_batch(4, 32, 1000, 8, bench.torch.device("cpu"))
    labeled = batch["labels"] != -100
    assert labeled.sum(dim=1).tolist() == [8] * 4
    assert not labeled[:, [0, 16, 31]].any()  # [CLS] and the two [SEP] are never predicted
    assert (batch["input_ids"][:, [0, 16, 31]] == bench.torch.tensor([bench.CLS_ID, bench.SEP_ID, bench.SEP_ID])).all()
    assert (batch["input_ids"][labeled] == bench.MASK_ID).all()
    assert (batch["labels"][labeled] >= bench.FIRST_PLAIN_ID).all()
    assert batch["token_type_ids"][:, :17].sum() == 0 and (batch["token_type_ids"][:, 17:] == 1).all()
