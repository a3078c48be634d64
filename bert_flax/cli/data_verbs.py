"""`bert-flax inspect-data` and `bert-flax bench-data`: the input pipeline, seen and timed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bert_flax.cli.common import add_config_command, config_of, print_columns
from bert_flax.errors import UserError


def add_inspect_data(verbs: Any) -> None:
    help = "print training examples as the model will see them"
    command = add_config_command(verbs, "inspect-data", _inspect_data, help)
    command.add_argument("--num", type=int, metavar="N", default=4, help="number of examples (default 4)")
    command.add_argument("--json", action="store_true", help="one JSON object per line")
    command.add_argument("--split", choices=("train", "eval"), default="train", help="which examples")


def _inspect_data(args: argparse.Namespace) -> int:
    from bert_flax.data.dataset import build_pretraining_data
    from bert_flax.data.inspect import example_records, render

    config = config_of(args)
    data = build_pretraining_data(config)
    if args.split == "eval" and data.eval is None:
        raise UserError("there is no eval split (data.eval_fraction=0); use --split train")
    records = example_records(data, args.num, args.split)
    for index, record in enumerate(records):
        print(json.dumps(record) if args.json else render(record, index, config.train.nsp, data.tokenizer))
    return 0


def add_bench_data(verbs: Any) -> None:
    help = "measure the data pipeline: preparation time and tokens/s"
    command = add_config_command(verbs, "bench-data", _bench_data, help)
    seconds_help = "time spent producing batches (default 3)"
    command.add_argument("--seconds", type=float, metavar="S", default=3.0, help=seconds_help)
    command.add_argument("--json", action="store_true", help="one JSON object")


def _bench_data(args: argparse.Namespace) -> int:
    from bert_flax.data.bench import bench_data

    result = bench_data(config_of(args), seconds=args.seconds)
    if args.json:
        print(json.dumps(result))
    else:
        print_columns(result, float_format="{}")
    return 0
