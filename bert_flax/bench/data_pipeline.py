"""`bert-flax bench-data`: how fast the corpus is prepared and opened, and how fast batches come."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import Any

from bert_flax.config import Config
from bert_flax.data.dataset import build_pretraining_data


def bench_data(config: Config, seconds: float = 3.0, min_batches: int = 20, cold: bool = True) -> dict[str, Any]:
    """Time preparing the corpus (`cold`: into an empty directory), opening it prepared (warm) and
    producing batches on this core: pairing, layout and masking, row by row.

    Tokens are counted two ways: every position (B × L) and non-padding positions only (their ratio is
    the packing efficiency); examples per batch count the real examples (more than B with data.packing).
    """
    result: dict[str, Any] = {}
    if cold:
        with tempfile.TemporaryDirectory() as empty:
            data = dataclasses.replace(config.data, cache_dir=empty, prepared_dir="")
            start = time.perf_counter()
            build_pretraining_data(dataclasses.replace(config, data=data), progress=False)
            result["prepare_cold_seconds"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    data = build_pretraining_data(config, progress=False)
    batches = data.train.iterate()
    next(batches)
    result["open_warm_to_first_batch_seconds"] = round(time.perf_counter() - start, 3)

    positions = real_tokens = examples = num_batches = 0
    start = time.perf_counter()
    while num_batches < min_batches or time.perf_counter() - start < seconds:
        batch, position = next(batches)
        positions += batch["input_ids"].size
        real_tokens += int(batch["attention_mask"].sum())
        examples += int(batch["example_weights"].sum())
        num_batches += 1
    elapsed = time.perf_counter() - start
    counts = data.prepared.manifest["counts"]
    return {
        "corpus": data.source,
        "prepared_dir": str(data.prepared.directory),
        "documents": counts["documents"],
        "corpus_tokens": counts["tokens"],
        **result,
        "examples_per_epoch": data.train.examples_per_epoch,
        "batch_size": config.train.batch_size,
        "max_seq_len": config.data.max_seq_len,
        "packing": config.data.packing,
        "max_examples_per_row": config.data.examples_per_row,
        "batches": num_batches,
        "epochs": position.epoch,
        "seconds": round(elapsed, 3),
        "tokens_per_second": round(positions / elapsed),
        "real_tokens_per_second": round(real_tokens / elapsed),
        "padding_fraction": round(1 - real_tokens / positions, 4),
        "packing_efficiency": round(real_tokens / positions, 4),
        "examples_per_batch": round(examples / num_batches, 2),
        "batches_per_second": round(num_batches / elapsed, 1),
    }
