"""`bert-flax bench`: the report of every mode, the interleaved timing, the baseline registry, and the
model-FLOP formula by hand."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time

import numpy as np
import pytest
from conftest import BATCH_KEYS, REPO_ROOT, smoke_config
from transformers import BertConfig

from bert_flax.bench.baselines import BASELINES, Baseline
from bert_flax.bench.run import run_bench
from bert_flax.bench.synthetic import synthetic_batch
from bert_flax.bench.timing import Mode, prepare_mode, time_interleaved
from bert_flax.cli import build_parser, main
from bert_flax.engine.prefetch import Prefetcher, maybe_prefetch
from bert_flax.errors import UserError
from bert_flax.model.flops import encoder_parameters, flops_per_token
from bert_flax.model.pretraining import preset_config

MODE_KEYS = {
    "compile_seconds",
    "step_seconds_median",
    "step_seconds_p10",
    "step_seconds_p90",
    "step_seconds_min",
    "step_seconds_max",
    "tokens_per_second",
    "sequences_per_second",
    "real_tokens_per_second",
    "examples_per_second",
    "model_tflops_per_second",
    "mfu",
    "device_peak_bytes",
    "compiled_argument_bytes",
    "compiled_output_bytes",
    "compiled_alias_bytes",
    "compiled_temp_bytes",
    "xla_flops_per_step",
    "last_loss",
}


def test_flops_per_token_bert_base_by_hand():
    # BERT-base: H = 768, 12 layers, FFN I = 3072, V = 30522; L = 128, P = 20.
    # Per layer: Q, K, V, O weights 4·768² = 2,359,296 and biases 4·768 = 3,072;
    # FFN 2·768·3072 = 4,718,592 weights, biases 3072 + 768 = 3,840; two LayerNorms 4·768 = 3,072.
    # 2,359,296 + 3,072 + 4,718,592 + 3,840 + 3,072 = 7,087,872 (= 12·768² + 13·768); × 12 = 85,054,464.
    base = preset_config("base", 30522)
    assert encoder_parameters(base) == 85_054_464
    dense = 6 * 85_054_464  # 510,326,784
    attention = 12 * 12 * 128 * 768  # 14,155,776
    # MLM head on 20 of 128 positions: transform 768² = 589,824 + decoder 768·30522 = 23,440,896.
    head = 6 * (589_824 + 23_440_896) * 20 / 128  # 6 · 24,030,720 · 0.15625 = 22,528,800
    assert dense + attention + head == 547_011_360
    assert flops_per_token(base, 128, 20) == 547_011_360
    # HF's BertConfig() defaults are bert-base too.
    assert flops_per_token(BertConfig(), 128, 20) == 547_011_360


def test_encoder_parameters_match_the_model(corpus_path, smoke_cache):
    """The formula counts exactly the parameters under bert/encoder of the real model."""
    import jax

    from bert_flax.interop.model_init import build_model

    config = smoke_config(corpus_path, smoke_cache)
    pretrained = build_model(config, 1000)
    counted = sum(x.size for x in jax.tree.leaves(pretrained.params["bert"]["encoder"]))
    assert encoder_parameters(pretrained.config) == counted


def test_synthetic_batch_contract(corpus_path, smoke_cache):
    config = smoke_config(corpus_path, smoke_cache)
    batch = synthetic_batch(config, 1000, np.random.default_rng(0))
    assert set(batch) == BATCH_KEYS
    b, seq, p = 8, 64, config.masking.num_predictions(64)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert batch[key].shape == (b, seq) and batch[key].dtype == np.int32
    for key in ("masked_lm_positions", "masked_lm_ids"):
        assert batch[key].shape == (b, p) and batch[key].dtype == np.int32
    assert batch["masked_lm_weights"].dtype == np.float32 and batch["next_sentence_labels"].shape == (b, 1)
    assert np.all(batch["example_weights"] == 1) and np.all(batch["segment_ids"] == 1)
    # round(0.15 · 61 non-special positions) = 9 real predictions of the 12 slots, on distinct positions.
    assert (batch["masked_lm_weights"].sum(axis=1) == 9).all()
    assert all(len(set(row[:9])) == 9 for row in batch["masked_lm_positions"])


@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_bench_reports_ours_and_hf_example(corpus_path, smoke_cache, data):
    config = smoke_config(corpus_path, smoke_cache)
    compare = data == "synthetic"  # the other impl once: it adds a compile
    result = run_bench(
        config, steps=2, warmup=1, baseline="hf-example", data=data, peak_tflops=1.0, compare_impl=compare
    )
    assert result["data"] == data and result["batch_size"] == 8 and result["max_seq_len"] == 64
    assert result["devices"] >= 1 and result["peak_source"] == "given" and result["impl"] == "hf"
    # A random model's first steps: MLM over the 1,000-token vocabulary plus NSP's two classes. A mode
    # that reported the MLM loss alone, or a mean over the wrong count, would be far off.
    untrained = math.log(result["vocab_size"]) + math.log(2)
    for mode in ("ours", "hf-example", *(["ours-fast"] if compare else [])):
        report = result[mode]
        assert set(report) == MODE_KEYS
        assert report["step_seconds_min"] <= report["step_seconds_median"] <= report["step_seconds_max"]
        assert report["compile_seconds"] > report["step_seconds_max"]  # compilation is not in a step's time
        assert abs(report["last_loss"] - untrained) < 0.25, (mode, report["last_loss"], untrained)
    assert {"ratio_tokens_per_second", *(["ratio_fast_to_hf"] if compare else [])} <= set(result)


def test_bench_compare_packing_reports_real_tokens(corpus_path, smoke_cache):
    """Packed and unpacked steps interleaved, each on its own rows of the corpus: real tokens and examples
    per second from the timed batches; packed rows carry more of both per step."""
    config = smoke_config(corpus_path, smoke_cache, "model.impl=fast", "data.max_seq_len=128")
    result = run_bench(config, steps=2, warmup=1, data="real", compare_packing=True, prefetch=0)
    packed, unpacked = result["ours-packed"], result["ours"]
    assert set(packed) == set(unpacked) == MODE_KEYS and result["packing"] is False
    for report in (packed, unpacked):
        assert 0 < report["real_tokens_per_second"] < report["tokens_per_second"]
    per_step = {name: r["real_tokens_per_second"] * r["step_seconds_median"] for name, r in (("p", packed), ("u", unpacked))}
    assert per_step["p"] > per_step["u"]  # roughly: the rates are over all timed steps, not the median one
    ratio = packed["real_tokens_per_second"] / unpacked["real_tokens_per_second"]
    assert result["ratio_real_tokens_packed_to_unpacked"] == pytest.approx(ratio)
    assert result["ratio_examples_packed_to_unpacked"] > 0
    with pytest.raises(UserError, match="--data real"):
        run_bench(config, steps=1, data="synthetic", compare_packing=True)


def test_interleaved_timing_alternates_modes_and_skips_warmup():
    """Two steps of known, different durations: each mode's times are its own, warmup excluded, and the
    modes take turns (background load would otherwise hit one mode's steps only)."""
    calls = []

    def mode(name: str, seconds: float) -> Mode:
        def step(state, batch):
            calls.append(name)
            time.sleep(seconds)
            return state + 1, {"loss": 0.0}

        return prepare_mode(lambda batch: None, step, 0, lambda b: b, lambda o: 0.0, lambda: iter(range(99)), 0)

    quick, slow = mode("quick", 0.01), mode("slow", 0.04)
    time_interleaved([quick, slow], steps=3, warmup=2)
    assert calls == ["quick", "slow"] * 5 and quick.state == slow.state == 5
    assert len(quick.times) == len(slow.times) == 3
    assert 0.01 <= min(quick.times) and max(quick.times) < 0.04 <= min(slow.times)


def test_a_baseline_is_one_registry_entry(corpus_path, smoke_cache, monkeypatch):
    """A new baseline needs one entry: the CLI offers it and `run_bench` times it beside ours."""
    from bert_flax.bench.ours import trainer_mode

    def fast(config, *rest):
        return trainer_mode(dataclasses.replace(config, model=dataclasses.replace(config.model, impl="fast")), *rest)

    monkeypatch.setitem(BASELINES, "ours-as-fast", Baseline("the trainer with model.impl=fast", fast))
    config = smoke_config(corpus_path, smoke_cache)
    result = run_bench(config, steps=1, warmup=0, baseline="ours-as-fast")
    assert set(result["ours-as-fast"]) == MODE_KEYS
    assert result["ratio_tokens_per_second"] > 0
    assert build_parser().parse_args(["bench", "--baseline", "ours-as-fast"]).baseline == ["ours-as-fast"]


def test_an_external_baseline_runs_after_ours_at_its_shape(corpus_path, smoke_cache, monkeypatch):
    """A baseline that is another program (as PyTorch is) gets the config's shape and is read back."""
    report = "{'fixed': {'tokens_per_second': B * L / 0.5, 'first_step_seconds': 0.25}}"
    program = f"import json, sys; B, L = map(int, sys.argv[1:]); print(json.dumps({report}))"
    command = lambda shape, backend: [sys.executable, "-c", program, str(shape.batch_size), str(shape.seq_len)]  # noqa: E731
    monkeypatch.setitem(BASELINES, "fixed-rate", Baseline("B × L tokens per 0.5 s", command=command))
    config = smoke_config(corpus_path, smoke_cache)
    result = run_bench(config, steps=1, warmup=0, baseline="fixed-rate")
    fixed = {"tokens_per_second": 8 * 64 / 0.5, "first_step_seconds": 0.25, "compile_seconds": 0.25}
    assert result["fixed-rate"] == fixed
    assert result["ratio_tokens_per_second"] == result["ours"]["tokens_per_second"] / (8 * 64 / 0.5)
    with pytest.raises(UserError, match="--baseline fixed-rate cannot run: it builds its model from a preset"):
        from_checkpoint = dataclasses.replace(config, model=dataclasses.replace(config.model, init="some/model"))
        run_bench(from_checkpoint, baseline="fixed-rate")


def test_bench_compile_only_reports_compile_time_and_memory(capsys):
    """Shapes only: the step compiles without any state allocated or step run."""
    assert main(["bench", "--config", str(REPO_ROOT / "configs" / "smoke.yaml"), "--compile-only"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["impl"] == "hf" and result["batch_size"] == 8 and result["compile_seconds"] > 0
    assert result["compiled_argument_bytes"] > 0 and result["compiled_temp_bytes"] > 0


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_bench_cli_json_without_peak(corpus_path, smoke_cache, capsys, mode):
    args = [
        "bench",
        "--config",
        str(REPO_ROOT / "configs" / "smoke.yaml"),
        f"data.path={corpus_path}",
        f"data.cache_dir={smoke_cache}",
        f"parallel.mode={mode}",
    ]
    assert main([*args, "--steps", "1", "--warmup", "0", "--prefetch", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ours"]["mfu"] is None and "hf-example" not in result and result["prefetch"] == 0
    assert result["parallel_mode"] == mode and result["ours"]["xla_flops_per_step"] > 0


def test_bench_bad_input_is_one_line(capsys):
    assert main(["bench", "--config", str(REPO_ROOT / "configs" / "smoke.yaml"), "--steps", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --steps must be")


def test_prefetch_keeps_order_and_raises_producer_errors():
    assert list(Prefetcher((2 * x for x in range(50)), size=3)) == [2 * x for x in range(50)]
    assert list(maybe_prefetch(iter(range(5)), 0)) == [0, 1, 2, 3, 4]

    def broken():
        yield 1
        raise ValueError("corpus gone")

    prefetched = Prefetcher(broken(), size=2)
    assert next(prefetched) == 1
    with pytest.raises(ValueError, match="corpus gone"):
        next(prefetched)
    with Prefetcher(iter(range(10**9)), size=2) as endless:  # close() stops a blocked producer
        assert next(endless) == 0
    assert not endless._thread.is_alive()
