"""`bert-flax bench`: the model step's throughput, MFU and memory, against Hugging Face's Flax example.

"ours" is exactly the trainer's path: `make_data_parallel` → `init_train_state` → `place_state`,
then `place_batch` + `train_step` per step. "hf-example" is how transformers' Flax examples train
(run_mlm_flax.py): `FlaxBertForPreTraining.__call__` (full-vocabulary logits at every position),
cross-entropy on one-hot labels with -100 (and [PAD]) ignored via `labels > 0`, plus NSP
cross-entropy, `optax.adamw` with the same schedule and no clipping, a flax `TrainState`, one jit
with the state donated (their `jax.pmap(train_step, donate_argnums=(0,))`), on the same mesh,
batches and initial parameters.

"ours" runs `model.impl` (hf or fast); `compare_impl` also times the other impl on the same
batches and parameters. `compile_only` compiles the step on shapes alone (no state allocated, nothing
run) and reports compile time and XLA's memory_analysis.

Every step is timed from taking its batch to `jax.block_until_ready` of its outputs, after
`warmup` untimed steps; compilation is timed separately (ahead of time, `lower().compile()`).
With a baseline the two alternate step by step, so load from other processes hits both alike.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from flax.training.common_utils import onehot
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from transformers import FlaxBertForPreTraining

from bert_flax.config import Config
from bert_flax.data.masking import to_hf_labels
from bert_flax.engine.optim import ADAM_EPS, learning_rate_schedule, make_optimizer
from bert_flax.engine.parallel import check_batch_sizes, make_data_parallel
from bert_flax.engine.prefetch import maybe_prefetch
from bert_flax.engine.step import init_train_state
from bert_flax.errors import UserError
from bert_flax.model.flops import BASELINES, flops_per_token
from bert_flax.model.losses import normalize, pretraining_task
from bert_flax.model.pretraining import PretrainingModel, build_model, compute_dtype, preset_config

SYNTHETIC_POOL = 8  # distinct synthetic batches, cycled
Batches = Callable[[], Iterator[dict]]  # a factory of fresh, identical host-batch iterators


def measure_peak_tflops(dtype: jnp.dtype, size: int | None = None, repeats: int = 10) -> float:
    """TFLOP/s of a square matmul on the first device (2048² on CPU, 8192² elsewhere)."""
    device = jax.devices()[0]
    n = size or (2048 if device.platform == "cpu" else 8192)
    a = jax.device_put(jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype), device)
    matmul = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(matmul(a, a))
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a, a)
    jax.block_until_ready(out)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def synthetic_vocab_size(config: Config) -> int:
    """The vocabulary the model gets without reading a corpus: tokenizer.vocab_size when the
    tokenizer is trained (a trained vocabulary can come out slightly smaller), else the size of
    the named tokenizer (which a `model.init` checkpoint must match)."""
    if config.tokenizer.train:
        return config.tokenizer.vocab_size
    from bert_flax.data.tokenizer import TokenIds, load_tokenizer

    return TokenIds.from_tokenizer(load_tokenizer(config.tokenizer)).vocab_size


def synthetic_batch(config: Config, vocab_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A batch of the real shapes with no padding: [CLS] A [SEP] B [SEP], A and B half each, and the
    pipeline's number of predictions (mask_prob × the 3-less length, rounded, at least 1, at most P)."""
    batch_size, seq_len = config.train.batch_size, config.data.max_seq_len
    num_slots = config.masking.num_predictions(seq_len)
    cls_id, sep_id, mask_id, first_id = 2, 3, 4, 5  # trained vocabularies' order; ids do not change speed
    input_ids_BxL = rng.integers(first_id, vocab_size, (batch_size, seq_len), dtype=np.int32)
    middle = seq_len // 2
    input_ids_BxL[:, 0], input_ids_BxL[:, middle], input_ids_BxL[:, -1] = cls_id, sep_id, sep_id
    token_type_ids_BxL = np.zeros((batch_size, seq_len), np.int32)
    token_type_ids_BxL[:, middle + 1 :] = 1
    candidates = np.setdiff1d(np.arange(seq_len), [0, middle, seq_len - 1])
    num_real = min(num_slots, max(1, round(config.masking.mask_prob * len(candidates))))
    positions_BxP = np.zeros((batch_size, num_slots), np.int32)
    weights_BxP = np.zeros((batch_size, num_slots), np.float32)
    for row in range(batch_size):
        positions_BxP[row, :num_real] = np.sort(rng.choice(candidates, num_real, replace=False))
    weights_BxP[:, :num_real] = 1.0
    masked_ids_BxP = np.where(weights_BxP > 0, np.take_along_axis(input_ids_BxL, positions_BxP, axis=1), 0)
    rows_B = np.arange(batch_size)[:, None]
    input_ids_BxL[rows_B, positions_BxP[:, :num_real]] = mask_id
    return {
        "input_ids": input_ids_BxL,
        "token_type_ids": token_type_ids_BxL,
        "attention_mask": np.ones((batch_size, seq_len), np.int32),
        "masked_lm_positions": positions_BxP,
        "masked_lm_ids": masked_ids_BxP.astype(np.int32),
        "masked_lm_weights": weights_BxP,
        "next_sentence_labels": rng.integers(0, 2, batch_size, dtype=np.int32),
    }


def hf_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our batch in the HF example's form: labels [B, L] with -100 where nothing is predicted."""
    return {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "token_type_ids": batch["token_type_ids"],
        "labels": to_hf_labels(batch),
        "next_sentence_label": batch["next_sentence_labels"],
    }


def _hf_decay_mask(params: Any) -> Any:
    """run_mlm_flax's decay_mask_fn."""
    flat = flatten_dict(params)
    return unflatten_dict({path: path[-1] != "bias" and path[-2:] != ("LayerNorm", "scale") for path in flat})


class HFExampleStep:
    """The HF Flax example's train step, jitted on a ("data",) mesh over all devices (their pmap, as jit)."""

    def __init__(self, pretrained: PretrainingModel, config: Config) -> None:
        schedule = learning_rate_schedule(config.optim, config.train.steps)
        tx = optax.adamw(schedule, eps=ADAM_EPS, weight_decay=config.optim.weight_decay, mask=_hf_decay_mask)
        model, objectives = pretrained.model, config.train.objectives
        mesh = Mesh(np.asarray(jax.devices()), ("data",))
        replicated, rows = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
        self.place_batch = lambda batch: {key: jax.device_put(value, rows) for key, value in batch.items()}

        def train_step(state: train_state.TrainState, batch: dict, dropout_rng: jax.Array) -> tuple:
            dropout_rng, new_dropout_rng = jax.random.split(dropout_rng)

            def loss_fn(params: Any) -> jax.Array:
                labels_BxL = batch["labels"]
                out = state.apply_fn(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"],
                    params=params,
                    dropout_rng=dropout_rng,
                    train=True,
                )
                logits_BxLxV, nsp_logits_Bx2 = out[0], out[1]
                loss = jnp.zeros((), jnp.float32)
                if "mlm" in objectives:
                    label_mask_BxL = jnp.where(labels_BxL > 0, 1.0, 0.0)
                    mlm_BxL = optax.softmax_cross_entropy(logits_BxLxV, onehot(labels_BxL, logits_BxLxV.shape[-1]))
                    loss += (mlm_BxL * label_mask_BxL).sum() / label_mask_BxL.sum()
                if "nsp" in objectives:
                    labels_B = batch["next_sentence_label"]
                    loss += optax.softmax_cross_entropy_with_integer_labels(nsp_logits_Bx2, labels_B).mean()
                return loss

            loss, grad = jax.value_and_grad(loss_fn)(state.params)
            new_state = state.apply_gradients(grads=grad)
            return new_state, {"loss": loss, "learning_rate": schedule(state.step)}, new_dropout_rng

        self._step = jax.jit(
            train_step,
            in_shardings=(replicated, rows, replicated),
            out_shardings=(replicated, replicated, replicated),
            donate_argnums=(0,),
        )
        state = train_state.TrainState.create(apply_fn=model.__call__, params=pretrained.params, tx=tx)
        # The step's own output layout (int32 step, replicated arrays): the first call must not retrace.
        state = state.replace(step=jnp.zeros((), jnp.int32))
        self.state = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree), out_shardings=replicated)(state)
        self.dropout_rng = jax.device_put(jax.random.PRNGKey(config.train.seed), replicated)

    def step(self, state: Any, batch: dict) -> tuple[Any, dict]:
        state, metrics, self.dropout_rng = self._step(state, batch, self.dropout_rng)
        return state, metrics

    def compile(self, state: Any, batch: dict) -> Any:
        return self._step.lower(state, batch, self.dropout_rng).compile()


@dataclasses.dataclass
class _Mode:
    """One step function being timed: its state, its (prefetched) host batches and how it places them
    on the devices (in the timed loop, as the trainer does), its step times."""

    step: Callable[[Any, Any], tuple[Any, Any]]
    state: Any
    batches: Iterator
    place: Callable[[dict], Any]
    compiled: Any  # jax.stages.Compiled
    compile_seconds: float
    outputs: Any = None
    times: list[float] = dataclasses.field(default_factory=list)


def _prepare(
    compile_step: Callable[[Any], Any],
    step: Callable[[Any, Any], tuple[Any, Any]],
    state: Any,
    place: Callable[[dict], Any],
    new_batches: Batches,
    prefetch: int,
) -> _Mode:
    """Compile ahead of time (timed) and start the mode's batch stream."""
    start = time.perf_counter()
    compiled = compile_step(place(next(iter(new_batches()))))
    compile_s = time.perf_counter() - start
    return _Mode(step, state, maybe_prefetch(new_batches(), prefetch), place, compiled, compile_s)


def _time_interleaved(modes: list[_Mode], steps: int, warmup: int) -> None:
    """Step i of every mode, then step i + 1 of every mode, ...: background load hits all modes alike.

    A step is timed from taking its batch to `block_until_ready` of its outputs.
    """
    try:
        for index in range(warmup + steps):
            for mode in modes:
                start = time.perf_counter()
                mode.state, mode.outputs = mode.step(mode.state, mode.place(next(mode.batches)))
                jax.block_until_ready((mode.state, mode.outputs))
                if index >= warmup:
                    mode.times.append(time.perf_counter() - start)
    finally:
        for mode in modes:
            getattr(mode.batches, "close", lambda: None)()


def _memory(compiled: Any) -> dict[str, int | None]:
    """The compiled step's buffer sizes (XLA's memory_analysis) and the device's peak (None on CPU)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    out: dict[str, int | None] = {"device_peak_bytes": stats.get("peak_bytes_in_use")}
    analysis = compiled.memory_analysis()
    for name in ("argument", "output", "alias", "temp"):
        out[f"compiled_{name}_bytes"] = None if analysis is None else int(getattr(analysis, f"{name}_size_in_bytes"))
    return out


def _xla_flops(compiled: Any) -> float | None:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return None if not cost or "flops" not in cost else float(cost["flops"])


def _summary(
    times: list[float], tokens_per_step: int, batch_size: int, model_flops_per_step: float, peak: float | None
) -> dict:
    median = statistics.median(times)
    p10, p90 = (float(np.percentile(times, q)) for q in (10, 90))
    tflops = model_flops_per_step / median / 1e12
    return {
        "step_seconds_median": median,
        "step_seconds_p10": p10,
        "step_seconds_p90": p90,
        "step_seconds_min": min(times),
        "step_seconds_max": max(times),
        "tokens_per_second": tokens_per_step / median,
        "sequences_per_second": batch_size / median,
        "model_tflops_per_second": tflops,
        "mfu": None if peak is None else tflops / peak,
    }


def _host_batches(config: Config, data: str, vocab_size: int, train_stream: Any) -> Batches:
    """Each mode starts from the same batches: the corpus' (`real`) or a pool of synthetic ones."""
    if data == "real":
        return lambda: (batch for batch, _ in train_stream.iterate())
    rng = np.random.default_rng(config.train.seed)
    pool = [synthetic_batch(config, vocab_size, rng) for _ in range(SYNTHETIC_POOL)]
    return lambda: itertools.cycle(pool)


def _report(mode: _Mode, summary: tuple, last_loss: float) -> dict[str, Any]:
    return {
        "compile_seconds": mode.compile_seconds,
        **_summary(mode.times, *summary),
        **_memory(mode.compiled),
        "xla_flops_per_step": _xla_flops(mode.compiled),
        "last_loss": last_loss,
    }


def _check_options(
    steps: int, warmup: int, baseline: str | None, data: str, prefetch: int, peak: float | None, measure: bool
) -> None:
    if steps < 1 or warmup < 0 or prefetch < 0:
        raise UserError(f"--steps must be ≥ 1, --warmup and --prefetch ≥ 0; got {steps}, {warmup}, {prefetch}")
    if baseline is not None and baseline not in BASELINES:
        raise UserError(f"--baseline must be one of {', '.join(BASELINES)}; got {baseline!r}")
    if data not in ("synthetic", "real"):
        raise UserError(f"--data must be synthetic or real; got {data!r}")
    if peak is not None and (measure or peak <= 0):
        raise UserError("--peak-tflops must be positive and cannot be combined with --measure-peak")


def _model_and_batches(config: Config, data: str) -> tuple[PretrainingModel, int, Batches]:
    """The model, its vocabulary size and the host-batch factory: from the corpus (`real`) or synthetic."""
    train_stream = None
    if data == "real":
        from bert_flax.data.dataset import build_pretraining_data

        prepared = build_pretraining_data(config)
        vocab_size, train_stream = prepared.ids.vocab_size, prepared.train
    else:
        vocab_size = synthetic_vocab_size(config)
    return build_model(config, vocab_size), vocab_size, _host_batches(config, data, vocab_size, train_stream)


def _peak_tflops(given: float | None, measure: bool, dtype: jnp.dtype) -> tuple[float | None, str | None]:
    """(peak TFLOP/s of one device, "given" / "measured"), or (None, None): no MFU then."""
    if measure:
        return measure_peak_tflops(dtype), "measured"
    return given, None if given is None else "given"


def _trainer_mode(config: Config, pretrained: PretrainingModel, batches: Batches, prefetch: int) -> tuple[_Mode, Any]:
    """The trainer's own objects and calls: make_data_parallel → init_train_state → place_state."""
    tx = make_optimizer(config.optim, config.train.steps)
    schedule = learning_rate_schedule(config.optim, config.train.steps)
    task = pretraining_task(pretrained.model, config.train.objectives, config.model)
    parallel = make_data_parallel(task, tx, schedule, config)
    state = parallel.place_state(init_train_state(pretrained.params, tx, config.train.seed))
    compile_step = lambda batch: parallel.compile_train_step(state, batch)  # noqa: E731
    return _prepare(compile_step, parallel.train_step, state, parallel.place_batch, batches, prefetch), parallel


def other_impl_config(config: Config) -> Config:
    """`config` with the other `model.impl`; settings hf lacks (scan, dots remat) fall back to its nearest."""
    model = config.model
    if model.impl == "hf":
        other = dataclasses.replace(model, impl="fast")
    else:
        remat = "none" if model.remat == "none" else "full"
        other = dataclasses.replace(model, impl="hf", scan_layers=False, remat=remat)
    return dataclasses.replace(config, model=other)


def _hf_example_mode(config: Config, pretrained: PretrainingModel, batches: Batches, prefetch: int) -> _Mode:
    hf = HFExampleStep(pretrained, config)
    place = lambda batch: hf.place_batch(hf_batch(batch))  # noqa: E731
    compile_step = lambda batch: hf.compile(hf.state, batch)  # noqa: E731
    return _prepare(compile_step, hf.step, hf.state, place, batches, prefetch)


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
        **_memory(compiled),
    }


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
) -> dict[str, Any]:
    """Time the trainer's step (and optionally the HF example's) on synthetic or real batches; one dict.

    `compare_impl`: also time the trainer's step with the other `model.impl`, as "ours-hf" or "ours-fast".
    """
    _check_options(steps, warmup, baseline, data, prefetch, peak_tflops, measure_peak)
    check_batch_sizes(config, jax.device_count(), jax.process_count())
    pretrained, vocab_size, new_batches = _model_and_batches(config, data)
    peak_tflops, peak_source = _peak_tflops(peak_tflops, measure_peak, pretrained.model.dtype)

    ours, parallel = _trainer_mode(config, pretrained, new_batches, prefetch)
    modes = {"ours": ours}
    other_config = other_impl_config(config)
    other_name = f"ours-{other_config.model.impl}"
    if compare_impl:
        modes[other_name] = _trainer_mode(other_config, pretrained, new_batches, prefetch)[0]
    if baseline == "hf-example":
        modes["hf-example"] = _hf_example_mode(config, pretrained, new_batches, prefetch)
    _time_interleaved(list(modes.values()), steps, warmup)

    batch_size, seq_len = config.train.batch_size, config.data.max_seq_len
    num_predictions = config.masking.num_predictions(seq_len)
    per_token = flops_per_token(pretrained.config, seq_len, num_predictions)
    peak_total = None if peak_tflops is None else peak_tflops * jax.device_count()
    summary = (batch_size * seq_len, batch_size, per_token * batch_size * seq_len, peak_total)
    def last_loss(name: str) -> float:
        if name == "hf-example":
            return float(modes[name].outputs["loss"])
        return normalize(parallel.read_metrics(modes[name].outputs), config.train.objectives)["loss"]

    results: dict[str, Any] = {name: _report(mode, summary, last_loss(name)) for name, mode in modes.items()}
    rate = {name: report["tokens_per_second"] for name, report in results.items()}
    if "hf-example" in results:
        results["ratio_tokens_per_second"] = rate["ours"] / rate["hf-example"]
    if compare_impl:
        fast, hf = ("ours", other_name) if config.model.impl == "fast" else (other_name, "ours")
        results["ratio_fast_to_hf"] = rate[fast] / rate[hf]

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
        "batch_size": batch_size,
        "max_seq_len": seq_len,
        "num_predictions": num_predictions,
        "parallel_mode": config.parallel.mode,
        "data": data,
        "prefetch": prefetch,
        "steps": steps,
        "warmup": warmup,
        "model_flops_per_token": per_token,
        "peak_tflops_per_device": peak_tflops,
        "peak_source": peak_source,
        **results,
    }
