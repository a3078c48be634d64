"""`bert-flax bench`: the trainer's step timed (tokens/s, MFU, compile time, memory), optionally next to
the other `model.impl`, the other `data.packing` and a registered baseline, all from the same initial
parameters (a baseline in another process, like PyTorch, runs after ours on the same shapes).

"ours" is exactly the trainer's path (ours.trainer_mode). `bench_row` times one step alone, as a row of
`bench --suite`. `compile_only` compiles the step on shapes alone (no state allocated, nothing run) and
reports compile time and XLA's memory_analysis.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import resource
import time
from typing import Any

import jax
import numpy as np
from transformers import FlaxBertForPreTraining

from bert_flax.bench.baselines import BASELINES, StepShape, external_report, run_external
from bert_flax.bench.checks import attention_kernel, expected_attention_kernel
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
    config: Config, steps: int, warmup: int, baseline: str | None, data: str, prefetch: int, peak: float | None,
    measure: bool, compare: tuple[bool, bool] = (False, False),
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
    if baseline is not None and BASELINES[baseline].external:
        why_not = BASELINES[baseline].available(jax.devices()[0].platform)
        if why_not or config.model.init or data != "synthetic":
            reason = why_not or "it builds its model from a preset on synthetic batches"
            raise UserError(f"--baseline {baseline} cannot run: {reason}; use model.init= and --data synthetic")
    if (config.data.packing or compare_packing) and (compare_impl or baseline is not None):
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


def _mode_report(mode: Mode, work: StepWork, batches: Batches, warmup: int) -> dict[str, Any]:
    """Step rates, memory and loss; real (non-padding) tokens and examples per second: the timed steps' own
    batches (a fresh iterator repeats them), their mean per step over the median step time."""
    timed = list(itertools.islice(batches(), warmup, warmup + len(mode.times)))
    rates = step_rates(mode.times, work)
    per_step = rates["step_seconds_median"] * len(timed)
    return {
        "compile_seconds": mode.compile_seconds,
        **rates,
        "real_tokens_per_second": sum(int(np.count_nonzero(b["attention_mask"])) for b in timed) / per_step,
        "examples_per_second": sum(float(b["example_weights"].sum()) for b in timed) / per_step,
        **memory(mode.compiled),
        "xla_flops_per_step": xla_flops(mode.compiled),
        "last_loss": mode.loss(mode.outputs),
    }


def _flops_per_token(config: Config, pretrained: PretrainingModel) -> float:
    seq_len = config.data.max_seq_len
    return flops_per_token(pretrained.config, seq_len, config.num_predictions)


def _step_work(config: Config, pretrained: PretrainingModel, peak: float | None) -> StepWork:
    batch_size, seq_len = config.train.batch_size, config.data.max_seq_len
    per_token = _flops_per_token(config, pretrained)
    return StepWork(
        tokens=batch_size * seq_len,
        sequences=batch_size,
        model_flops=per_token * batch_size * seq_len,
        peak_tflops=None if peak is None else peak * jax.device_count(),
    )


def _external_baseline(name: str, config: Config, vocab_size: int, steps: int, warmup: int, peak: float | None) -> dict:
    """An external baseline's report on the config's shapes (it raises when the process fails)."""
    shape = step_shape(config, vocab_size, steps, warmup, peak)
    finished = run_external(BASELINES[name], shape, jax.devices()[0].platform, 3600, dict(os.environ))
    if finished.error:
        raise RuntimeError(f"baseline {name} failed: {finished.error}")
    return external_report(finished.stdout)


def step_shape(config: Config, vocab_size: int, steps: int, warmup: int, peak: float | None) -> StepShape:
    """What an external baseline needs to time the step `config` describes."""
    return StepShape(
        preset=config.model.preset,
        vocab_size=vocab_size,
        seq_len=config.data.max_seq_len,
        batch_size=config.train.batch_size,
        mask_prob=config.masking.mask_prob,
        dtype=config.model.dtype,
        steps=steps,
        warmup=warmup,
        seed=config.train.seed,
        peak_tflops=peak,
    )


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
        "max_examples_per_row": config.data.examples_per_row,
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
    own rows of the corpus) and with `baseline` a registered baseline, interleaved (an external baseline
    runs after them in its own process); one dict."""
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
    external = baseline is not None and BASELINES[baseline].external
    if baseline is not None and not external:
        configs[baseline], factories[baseline] = config, batches
        modes[baseline] = BASELINES[baseline].mode(config, pretrained, batches, prefetch)
    time_interleaved(list(modes.values()), steps, warmup)

    results: dict[str, Any] = {
        name: _mode_report(mode, _step_work(configs[name], pretrained, peak), factories[name], warmup)
        for name, mode in modes.items()
    }
    if external:
        results[baseline] = _external_baseline(baseline, config, vocab_size, steps, warmup, peak)
    rate = {name: report["tokens_per_second"] for name, report in results.items()}
    if baseline is not None:
        results["ratio_tokens_per_second"] = rate["ours"] / rate[baseline]
    if compare_impl:
        fast, hf = ("ours", "ours-hf") if config.model.impl == "fast" else ("ours-fast", "ours")
        results["ratio_fast_to_hf"] = rate[fast] / rate[hf]
    if compare_packing:
        packed, unpacked = ("ours", "ours-unpacked") if config.data.packing else ("ours-packed", "ours")
        for key, ratio in (("real_tokens", "real_tokens_per_second"), ("examples", "examples_per_second")):
            results[f"ratio_{key}_packed_to_unpacked"] = results[packed][ratio] / results[unpacked][ratio]
    timing = {"steps": steps, "warmup": warmup, "model_flops_per_token": _flops_per_token(config, pretrained)}
    return {**_setup(config, pretrained, vocab_size, data, prefetch), **timing,
            "peak_tflops_per_device": peak, "peak_source": peak_source, **results}


def bench_row(
    config: Config, name: str = "ours", steps: int = 20, warmup: int = 3, data: str = "synthetic",
    peak_tflops: float | None = None, prefetch: int = 2,
) -> dict[str, Any]:
    """One step timed alone in this process, a row of `bench --suite`: "ours" (the trainer's step) or an
    in-process baseline. Its report plus real (non-padding) tokens/s, the attention kernel found in its
    compiled step (and the one expected there) and this process's peak RSS."""
    _check_options(config, steps, warmup, None, data, prefetch, peak_tflops, False)
    if name != "ours" and (name not in BASELINES or BASELINES[name].external):
        raise UserError(f"a suite row times ours or an in-process baseline; got {name!r}")
    check_batch_sizes(config, jax.device_count(), jax.process_count())
    vocab_size, batches = _batches(config, data)
    pretrained = build_model(config, vocab_size)
    new_mode = trainer_mode if name == "ours" else BASELINES[name].mode
    mode = new_mode(config, pretrained, batches, prefetch)
    time_interleaved([mode], steps, warmup)
    report = _mode_report(mode, _step_work(config, pretrained, peak_tflops), batches, warmup)
    return {
        **_setup(config, pretrained, vocab_size, data, prefetch),
        "steps": steps,
        "warmup": warmup,
        "model_flops_per_token": _flops_per_token(config, pretrained),
        **report,
        "attention_kernel": attention_kernel(mode.compiled),
        "expected_attention_kernel": expected_attention_kernel(config, pretrained) if name == "ours" else None,
        "host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
    }


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
