#!/usr/bin/env python
"""PyTorch baseline for `bert-flax bench`: training throughput of HF `BertForPreTraining`.

Same shapes, synthetic batch layout, model FLOPs and printed fields as `bert-flax bench`, so the two
can be compared on one machine. Needs torch and transformers; from bert_flax only its model presets
and FLOP count (pip install -e . first; neither imports JAX).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import resource
import sys
import time
from types import SimpleNamespace
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from bert_flax.config import MODEL_PRESETS  # config and flops import no JAX
from bert_flax.model import flops

# The ids `bert-flax bench` uses (a trained vocabulary's order); ids do not change speed.
CLS_ID, SEP_ID, MASK_ID, FIRST_PLAIN_ID = 2, 3, 4, 5

FLOPS_HELP = flops.FLOPS_HELP + " P = 4·ceil(L·mask_prob / 4)."


def preset_shape(preset: str) -> tuple[int, int]:
    """(layers, hidden) of a named preset."""
    shape = MODEL_PRESETS[preset]
    return shape["num_hidden_layers"], shape["hidden_size"]


def predictions_per_sequence(seq_len: int, mask_prob: float) -> int:
    """P: predicted slots per sequence, rounded up to a multiple of 4 (as bert_flax's masking)."""
    return 4 * math.ceil(seq_len * mask_prob / 4)


def flops_per_token(layers: int, hidden: int, seq_len: int, vocab_size: int, predictions: int) -> float:
    """Model FLOPs per token of a training step: `bert_flax.model.flops`, the count `bert-flax bench` uses."""
    sizes = SimpleNamespace(
        num_hidden_layers=layers, hidden_size=hidden, intermediate_size=4 * hidden, vocab_size=vocab_size
    )
    return flops.flops_per_token(sizes, seq_len, predictions)


def build_model(layers: int, hidden: int, vocab_size: int, seq_len: int, device: torch.device) -> torch.nn.Module:
    """A randomly initialised `BertForPreTraining` with SDPA attention, in train mode (dropout on)."""
    from transformers import BertConfig, BertForPreTraining

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
        max_position_embeddings=max(512, seq_len),
        attn_implementation="sdpa",
    )
    model = BertForPreTraining(config).to(device)
    model.train()
    return model


def build_optimizer(model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused on CUDA, foreach elsewhere."""
    kind = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, **kind)


def synthetic_batch(
    batch_size: int, seq_len: int, vocab_size: int, predictions: int, device: torch.device, seed: int = 0
) -> dict[str, torch.Tensor]:
    """[CLS] A [SEP] B [SEP] with no padding, P masked positions per row (labels -100 elsewhere)."""
    gen = torch.Generator().manual_seed(seed)
    input_ids_BxL = torch.randint(FIRST_PLAIN_ID, vocab_size, (batch_size, seq_len), generator=gen)
    middle = seq_len // 2
    special = [0, middle, seq_len - 1]
    input_ids_BxL[:, special] = torch.tensor([CLS_ID, SEP_ID, SEP_ID])
    token_type_ids_BxL = torch.zeros_like(input_ids_BxL)
    token_type_ids_BxL[:, middle + 1 :] = 1
    candidates_C = torch.tensor([i for i in range(seq_len) if i not in special])
    order_BxC = torch.rand((batch_size, len(candidates_C)), generator=gen).argsort(dim=1)
    positions_BxP = candidates_C[order_BxC[:, :predictions]]
    labels_BxL = torch.full_like(input_ids_BxL, -100)
    labels_BxL.scatter_(1, positions_BxP, input_ids_BxL.gather(1, positions_BxP))
    input_ids_BxL.scatter_(1, positions_BxP, MASK_ID)
    batch = {
        "input_ids": input_ids_BxL,
        "token_type_ids": token_type_ids_BxL,
        "attention_mask": torch.ones_like(input_ids_BxL),
        "labels": labels_BxL,
        "next_sentence_label": torch.randint(0, 2, (batch_size,), generator=gen),
    }
    return {name: value.to(device) for name, value in batch.items()}


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked (CUDA or CPU); float32 runs without one."""
    if dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    device: torch.device,
    dtype: str,
) -> torch.Tensor:
    """Forward with MLM + NSP labels, backward, AdamW update, zero_grad; returns the loss."""
    with autocast(device, dtype):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def timed_steps(step: Callable[[], None], count: int, device: torch.device) -> list[float]:
    """Wall seconds of `count` calls to `step`, each followed by a device synchronisation."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def peak_memory(device: torch.device) -> dict[str, Optional[int]]:
    """CUDA max_memory_allocated (None on CPU) and the process's peak host RSS, in bytes."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "device_peak_bytes": int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None,
        "host_peak_rss_bytes": int(rss if sys.platform == "darwin" else rss * 1024),
    }


def device_kind(device: torch.device) -> str:
    """A readable name of the device that ran the benchmark."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def summarise(times: Sequence[float], batch_size: int, seq_len: int, per_token: float, peak: Optional[float]) -> dict:
    """Step-time statistics, throughput and MFU (the same fields as `bert-flax bench`)."""
    median = float(np.median(times))
    tflops = per_token * batch_size * seq_len / median / 1e12
    return {
        "step_seconds_median": median,
        "step_seconds_p10": float(np.percentile(times, 10)),
        "step_seconds_p90": float(np.percentile(times, 90)),
        "step_seconds_min": min(times),
        "step_seconds_max": max(times),
        "tokens_per_second": batch_size * seq_len / median,
        "sequences_per_second": batch_size / median,
        "model_tflops_per_second": tflops,
        "mfu": None if peak is None else tflops / peak,
    }


def measure(args: argparse.Namespace, device: torch.device, predictions: int) -> dict[str, Any]:
    """Build, warm up and time the training step; the per-system result block."""
    layers, hidden = preset_shape(args.preset)
    torch.manual_seed(args.seed)
    model = build_model(layers, hidden, args.vocab_size, args.seq_len, device)
    optimizer = build_optimizer(model, device)
    compiled = torch.compile(model) if args.compile else model
    batch = synthetic_batch(args.batch_size, args.seq_len, args.vocab_size, predictions, device, args.seed)
    losses: list[torch.Tensor] = []

    def step() -> None:
        losses.append(train_step(compiled, optimizer, batch, device, args.dtype))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first = timed_steps(step, 1, device)
    if args.warmup == 0:  # the first step is then one of the timed ones
        times = first + timed_steps(step, args.steps - 1, device)
    else:
        timed_steps(step, args.warmup - 1, device)
        times = timed_steps(step, args.steps, device)
    per_token = flops_per_token(layers, hidden, args.seq_len, args.vocab_size, predictions)
    return {
        "first_step_seconds": first[0],
        **summarise(times, args.batch_size, args.seq_len, per_token, args.peak_tflops),
        **peak_memory(device),
        "last_loss": float(losses[-1]),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One record: the setup (named as in `bert-flax bench`), then the "pytorch" result block."""
    import transformers

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    layers, hidden = preset_shape(args.preset)
    predictions = predictions_per_sequence(args.seq_len, args.mask_prob)
    return {
        "backend": device.type,
        "device_kind": device_kind(device),
        "devices": 1,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "preset": args.preset,
        "layers": layers,
        "hidden": hidden,
        "vocab_size": args.vocab_size,
        "dtype": args.dtype,
        "compile": args.compile,
        "batch_size": args.batch_size,
        "max_seq_len": args.seq_len,
        "num_predictions": predictions,
        "data": "synthetic",
        "steps": args.steps,
        "warmup": args.warmup,
        "model_flops_per_token": flops_per_token(layers, hidden, args.seq_len, args.vocab_size, predictions),
        "peak_tflops_per_device": args.peak_tflops,
        "peak_source": None if args.peak_tflops is None else "given",
        "pytorch": measure(args, device, predictions),
    }


def format_table(result: dict[str, Any]) -> str:
    """The layout `bert-flax bench` prints: setup rows, then the result block indented."""
    lines = [f"{key:<26}  {value}" for key, value in result.items() if key != "pytorch"]
    lines.append("[pytorch]")
    for key, value in result["pytorch"].items():
        lines.append(f"  {key:<24}  {value:.4g}" if isinstance(value, float) else f"  {key:<24}  {value}")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments; the FLOP formula is in the --help epilog."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=FLOPS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=list(MODEL_PRESETS), default="base", help="model size (default base)")
    parser.add_argument("--vocab-size", type=int, default=30522)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mask-prob", type=float, default=0.15, help="P = 4·ceil(L·mask_prob / 4) (default 0.15)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps; the first (compilation included) is reported (default 3)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="bfloat16: autocast")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s of the device, for MFU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        parser.error("--peak-tflops must be positive")
    if args.vocab_size <= FIRST_PLAIN_ID:
        parser.error(f"--vocab-size must be more than {FIRST_PLAIN_ID}")
    if args.seq_len < 4 or predictions_per_sequence(args.seq_len, args.mask_prob) > args.seq_len - 3:
        parser.error("--seq-len is too short for the masked predictions")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(result) if args.json else format_table(result))


if __name__ == "__main__":
    main()
