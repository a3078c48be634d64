"""`bert-flax bench-data`: how fast the NumPy pipeline prepares a corpus and produces batches."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import Any

from bert_flax.config import Config
from bert_flax.data.dataset import build_pretraining_data


def bench_data(config: Config, seconds: float = 3.0, min_batches: int = 20) -> dict[str, Any]:
    """Time corpus preparation (cold cache and warm cache) and batch production on this core.

    Batch production covers pairing (a new draw each epoch), layout and masking. Tokens are
    counted two ways: every position (B × L) and non-padding positions only.
    """
    with tempfile.TemporaryDirectory() as empty_cache:
        cold_config = dataclasses.replace(config, data=dataclasses.replace(config.data, cache_dir=empty_cache))
        start = time.perf_counter()
        build_pretraining_data(cold_config)
        cold_s = time.perf_counter() - start
    start = time.perf_counter()
    data = build_pretraining_data(config)
    warm_s = time.perf_counter() - start

    stream = data.train
    stream._epoch_cache = None  # count the first epoch's pairing too
    batches = stream.iterate()
    positions = real_tokens = num_batches = 0
    start = time.perf_counter()
    while num_batches < min_batches or time.perf_counter() - start < seconds:
        batch, position = next(batches)
        positions += batch["input_ids"].size
        real_tokens += int(batch["attention_mask"].sum())
        num_batches += 1
    elapsed = time.perf_counter() - start
    return {
        "corpus": data.corpus.source,
        "documents": len(data.corpus.documents),
        "corpus_tokens": int(len(data.tokenized.token_ids)),
        "prepare_cold_seconds": round(cold_s, 3),
        "prepare_warm_seconds": round(warm_s, 3),
        "batch_size": config.train.batch_size,
        "max_seq_len": config.data.max_seq_len,
        "batches": num_batches,
        "epochs": position.epoch,
        "seconds": round(elapsed, 3),
        "tokens_per_second": round(positions / elapsed),
        "real_tokens_per_second": round(real_tokens / elapsed),
        "padding_fraction": round(1 - real_tokens / positions, 4),
        "batches_per_second": round(num_batches / elapsed, 1),
    }
