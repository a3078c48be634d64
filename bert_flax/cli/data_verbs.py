"""`bert-flax prepare`, `inspect-data` and `bench-data`: the input pipeline, built, seen and timed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bert_flax.cli.common import add_config_command, config_of, print_columns
from bert_flax.errors import UserError


def add_prepare(verbs: Any) -> None:
    help = "tokenize the corpus once into a memory-mapped prepared dataset (pretrain does it when missing)"
    command = add_config_command(verbs, "prepare", _prepare, help)
    command.add_argument("--force", action="store_true", help="rebuild even when an up-to-date one exists")
    command.add_argument("--verify", action="store_true", help="re-hash the prepared files against the manifest")
    command.add_argument("--quiet", action="store_true", help="no progress lines")


def _prepare(args: argparse.Namespace) -> int:
    from bert_flax.data.corpus import cache_root
    from bert_flax.data.prepare import ensure_prepared
    from bert_flax.data.prepared_files import verify
    from bert_flax.data.tokenizer import load_tokenizer, tokenizer_label

    config = config_of(args)
    tokenizer = load_tokenizer(config.tokenizer, config.data, cache_root(config.data))
    label = tokenizer_label(config.tokenizer)
    prepared = ensure_prepared(config.data, tokenizer.backend_tokenizer, label, not args.quiet, rebuild=args.force)
    if args.verify:
        verify(prepared.directory)
    counts = prepared.manifest["counts"]
    state = "prepared" if prepared.built else "up to date"
    print(f"{state}: {prepared.location} ({counts['documents']:,} documents, {counts['sentences']:,} sentences, "
          f"{counts['tokens']:,} tokens, {prepared.manifest['token_dtype']})")
    return 0


def add_inspect_data(verbs: Any) -> None:
    help = "print training examples as the model will see them"
    command = add_config_command(verbs, "inspect-data", _inspect_data, help)
    num_help = "number of rows (default 4; a packed row shows each of its examples)"
    command.add_argument("--num", type=int, metavar="N", default=4, help=num_help)
    command.add_argument("--json", action="store_true", help="one JSON object per row, one line each")
    command.add_argument("--split", choices=("train", "eval"), default="train", help="which examples")


def _inspect_data(args: argparse.Namespace) -> int:
    from bert_flax.data.dataset import build_pretraining_data
    from bert_flax.data.inspect_data import example_records, render

    config = config_of(args)
    data = build_pretraining_data(config)
    if args.split == "eval" and data.eval is None:
        raise UserError("there is no eval split (data.eval_fraction=0); use --split train")
    records = example_records(data, args.num, args.split, config.eval.max_batches)
    for index, record in enumerate(records):
        print(json.dumps(record) if args.json else render(record, index, config.train.nsp, data.tokenizer))
    return 0


def add_bench_data(verbs: Any) -> None:
    help = "measure the data pipeline: preparation time and tokens/s"
    command = add_config_command(verbs, "bench-data", _bench_data, help)
    seconds_help = "time spent producing batches (default 3)"
    command.add_argument("--seconds", type=float, metavar="S", default=3.0, help=seconds_help)
    command.add_argument("--json", action="store_true", help="one JSON object")
    command.add_argument("--warm-only", action="store_true", help="skip timing a prepare from scratch")


def _bench_data(args: argparse.Namespace) -> int:
    from bert_flax.bench.data_pipeline import bench_data

    result = bench_data(config_of(args), seconds=args.seconds, cold=not args.warm_only)
    if args.json:
        print(json.dumps(result))
    else:
        print_columns(result, float_format="{}")
    return 0
