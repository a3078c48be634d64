"""`bert-flax bench`: the trainer's step timed (tokens/s, MFU, compile time, memory), optionally next to
the other `model.impl` and a registered baseline, all on the same batches and initial parameters.

"ours" is exactly the trainer's path (modes.trainer_mode). `compile_only` compiles the step on shapes
alone (no state allocated, nothing run) and reports compile time and XLA's memory_analysis.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any

import jax
import numpy as np
from transformers import FlaxBertForPreTraining

from bert_flax.bench.baselines import BASELINES
from bert_flax.bench.device import memory, resolve_peak_tflops, xla_flops
from bert_flax.bench.ours import other_impl_config, trainer_mode
from bert_flax.bench.synthetic import synthetic_batch, synthetic_vocab_size
from bert_flax.bench.timing import Batches, Mode, StepWork, step_rates, time_interleaved
from bert_flax.config import Config
from bert_flax.engine.optim import learning_rate_schedule, make_optimizer
from bert_flax.engine.parallel import check_batch_sizes, make_data_parallel
from bert_flax.engine.step import init_train_state
from bert_flax.errors import UserError
from bert_flax.interop.model_init import build_model
from bert_flax.model.flops import flops_per_token
from bert_flax.model.losses import pretraining_task
from bert_flax.model.pretraining import PretrainingModel, compute_dtype, preset_config

SYNTHETIC_POOL = 8  # distinct synthetic batches, cycled
DATA_SOURCES = ("synthetic", "real")


def _check_options(
    config: Config,
    steps: int,
    warmup: int,
    baseline: str | None,
    data: str,
    prefetch: int,
    peak: float | None,
    measure: bool,
    compare: tuple[bool, bool],
) -> None:
    compare_impl, compare_packing = compare
    if steps < 1 or warmup < 0 or prefetch < 0:
        raise UserError(f"--steps must be ≥ 1, --warmup and --prefetch ≥ 0; got {steps}, {warmup}, {prefetch}")
    if baseline is not None and baseline not in BASELINES:
        raise UserError(f"--baseline must be one of {', '.join(BASELINES)}; got {baseline!r}")
    if data not in DATA_SOURCES:
        raise UserError(f"--data must be synthetic or real; got {data!r}")
    if peak is not None and (measure or peak <= 0):
        raise UserError("--peak-tflops must be positive and cannot be combined with --measure-peak")
    packing = config.data.packing or compare_packing
    if packing and (compare_impl or baseline is not None):
        raise UserError(
            "--compare-impl and --baseline time steps that take one example per row (model.impl=hf, the HF "
            "example); with data.packing=true or --compare-packing drop them"
        )
    if compare_packing and (data != "real" or config.model.impl != "fast"):
        raise UserError("--compare-packing times the corpus' own rows: pass --data real and model.impl=fast")


def _batches(config: Config, data: str) -> tuple[int, Batches]:
    """The vocabulary size and the host-batch factory: the corpus' batches through the input pipeline
    (`real`), or a cycled pool of synthetic ones; every mode of one config starts from the same batches."""
    if data == "real":
        from bert_flax.data.dataset import build_pretraining_data

        prepared = build_pretraining_data(config)
        stream = prepared.train
        return prepared.ids.vocab_size, lambda: (batch for batch, _ in stream.iterate())
    vocab_size = synthetic_vocab_size(config)
    rng = np.random.default_rng(config.train.seed)
    pool = [synthetic_batch(config, vocab_size, rng) for _ in range(SYNTHETIC_POOL)]
    return vocab_size, lambda: itertools.cycle(pool)


def _step_work(config: Config, pretrained: PretrainingModel, peak: float | None) -> StepWork:
    """What one step of `config` computes (every position counted), and the peak of all devices."""
    batch_size, seq_len = config.train.batch_size, config.data.max_seq_len
    per_token = flops_per_token(pretrained.config, seq_len, config.num_predictions)
    peak_all = None if peak is None else peak * jax.device_count()
    return StepWork(batch_size * seq_len, batch_size, per_token * batch_size * seq_len, peak_all)


def _mode_report(mode: Mode, work: StepWork, batches: Batches, warmup: int) -> dict[str, Any]:
    """Step rates, memory and loss; real (non-padding) tokens and examples per second over the timed steps'
    own batches (a fresh iterator repeats them)."""
    timed = list(itertools.islice(batches(), warmup, warmup + len(mode.times)))
    seconds = sum(mode.times)
    return {
        "compile_seconds": mode.compile_seconds,
        **step_rates(mode.times, work),
        "real_tokens_per_second": sum(float(b["attention_mask"].sum()) for b in timed) / seconds,
        "examples_per_second": sum(float(b["example_weights"].sum()) for b in timed) / seconds,
        **memory(mode.compiled),
        "xla_flops_per_step": xla_flops(mode.compiled),
        "last_loss": mode.loss(mode.outputs),
    }


def _setup(config: Config, pretrained: PretrainingModel, vocab_size: int, data: str, prefetch: int) -> dict[str, Any]:
    """What was timed, for the report's header."""
    device = jax.devices()[0]
    return {
        "backend": device.platform,
        "device_kind": device.device_kind,
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "preset": config.model.preset if not config.model.init else config.model.init,
        "layers": pretrained.config.num_hidden_layers,
        "hidden": pretrained.config.hidden_size,
        "vocab_size": vocab_size,
        "dtype": config.model.dtype,
        "impl": config.model.impl,
        "remat": config.model.remat,
        "scan_layers": config.model.scan_layers,
        "attention_dropout": config.model.attention_dropout,
        "batch_size": config.train.batch_size,
        "max_seq_len": config.data.max_seq_len,
        "num_predictions": config.num_predictions,
        "packing": config.data.packing,
        "max_examples_per_row": config.examples_per_row,
        "parallel_mode": config.parallel.mode,
        "data": data,
        "prefetch": prefetch,
    }


def packing_config(config: Config, packing: bool) -> Config:
    """`config` with data.packing set."""
    return dataclasses.replace(config, data=dataclasses.replace(config.data, packing=packing))


def run_bench(
    config: Config,
    steps: int = 20,
    warmup: int = 3,
    baseline: str | None = None,
    data: str = "synthetic",
    prefetch: int = 2,
    peak_tflops: float | None = None,
    measure_peak: bool = False,
    compare_impl: bool = False,
    compare_packing: bool = False,
) -> dict[str, Any]:
    """Time the trainer's step ("ours"), with `compare_impl` also the other `model.impl` ("ours-hf" or
    "ours-fast"), with `compare_packing` the other data.packing ("ours-packed" or "ours-unpacked", on its
    own rows of the corpus), and with `baseline` a registered baseline, interleaved; one dict."""
    compare = (compare_impl, compare_packing)
    _check_options(config, steps, warmup, baseline, data, prefetch, peak_tflops, measure_peak, compare)
    check_batch_sizes(config, jax.device_count(), jax.process_count())
    vocab_size, batches = _batches(config, data)
    pretrained = build_model(config, vocab_size)
    peak, peak_source = resolve_peak_tflops(peak_tflops, measure_peak, pretrained.model.dtype)

    configs = {"ours": config}
    if compare_impl:
        other = other_impl_config(config)
        configs[f"ours-{other.model.impl}"] = other
    if compare_packing:
        other = packing_config(config, not config.data.packing)
        configs["ours-packed" if other.data.packing else "ours-unpacked"] = other
    factories = {name: batches if c.data == config.data else _batches(c, data)[1] for name, c in configs.items()}
    modes = {name: trainer_mode(c, pretrained, factories[name], prefetch) for name, c in configs.items()}
    if baseline is not None:
        configs[baseline], factories[baseline] = config, batches
        modes[baseline] = BASELINES[baseline].mode(config, pretrained, batches, prefetch)
    time_interleaved(list(modes.values()), steps, warmup)

    results: dict[str, Any] = {
        name: _mode_report(mode, _step_work(configs[name], pretrained, peak), factories[name], warmup)
        for name, mode in modes.items()
    }
    rate = {name: report["tokens_per_second"] for name, report in results.items()}
    if baseline is not None:
        results["ratio_tokens_per_second"] = rate["ours"] / rate[baseline]
    if compare_impl:
        fast, hf = ("ours", "ours-hf") if config.model.impl == "fast" else ("ours-fast", "ours")
        results["ratio_fast_to_hf"] = rate[fast] / rate[hf]
    if compare_packing:
        packed, unpacked = ("ours", "ours-unpacked") if config.data.packing else ("ours-packed", "ours")
        real = {name: results[name]["real_tokens_per_second"] for name in (packed, unpacked)}
        results["ratio_real_tokens_packed_to_unpacked"] = real[packed] / real[unpacked]
        examples = {name: results[name]["examples_per_second"] for name in (packed, unpacked)}
        results["ratio_examples_packed_to_unpacked"] = examples[packed] / examples[unpacked]
    per_token = flops_per_token(pretrained.config, config.data.max_seq_len, config.num_predictions)
    timing = {"steps": steps, "warmup": warmup, "model_flops_per_token": per_token}
    return {**_setup(config, pretrained, vocab_size, data, prefetch), **timing,
            "peak_tflops_per_device": peak, "peak_source": peak_source, **results}


def compile_only(config: Config) -> dict[str, Any]:
    """Compile the trainer's step for a `model.preset` without allocating or running it: state and batch
    are shapes only (`jax.eval_shape`), so a step far larger than this machine's memory still compiles.
    Compile time and XLA's memory_analysis of the compiled step, for this machine's backend."""
    if config.model.init or config.parallel.mode != "jit":
        raise UserError("--compile-only needs model.init= (a model.preset) and parallel.mode=jit")
    check_batch_sizes(config, jax.device_count(), jax.process_count())
    vocab_size = synthetic_vocab_size(config)
    model = FlaxBertForPreTraining(
        preset_config(config.model.preset, vocab_size), dtype=compute_dtype(config.model.dtype), _do_init=False
    )
    tx = make_optimizer(config.optim, config.train.steps)
    schedule = learning_rate_schedule(config.optim, config.train.steps)
    parallel = make_data_parallel(pretraining_task(model, config.train.objectives, config.model), tx, schedule, config)
    init = lambda key: init_train_state(model.init_weights(key, (1, 1)), tx, config.train.seed)  # noqa: E731
    state = jax.eval_shape(init, jax.random.PRNGKey(0))
    host_batch = synthetic_batch(config, vocab_size, np.random.default_rng(0))
    batch = {key: jax.ShapeDtypeStruct(value.shape, value.dtype) for key, value in host_batch.items()}
    start = time.perf_counter()
    compiled = parallel.compile_train_step(state, batch)
    return {
        "backend": jax.devices()[0].platform,
        "preset": config.model.preset,
        "impl": config.model.impl,
        "remat": config.model.remat,
        "scan_layers": config.model.scan_layers,
        "dtype": config.model.dtype,
        "batch_size": config.train.batch_size,
        "max_seq_len": config.data.max_seq_len,
        "compile_seconds": time.perf_counter() - start,
        **memory(compiled),
    }
