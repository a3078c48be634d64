"""`bert-flax VERB [--config FILE] [key.sub=value ...]`: parse, then call one library function.

Bad input (a UserError) is one line on stderr and exit code 2; a run whose bucket failed (StorageFailed)
one line and exit code 75 (rerun to resume); `--debug` shows the traceback.
Each verb's arguments and handler sit together in data_verbs.py, train_verbs.py or model_verbs.py;
nothing outside this package imports it.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Sequence

from bert_flax.cli.common import Parser
from bert_flax.cli.data_verbs import add_bench_data, add_inspect_data, add_prepare
from bert_flax.cli.model_verbs import add_export, add_predict
from bert_flax.cli.train_verbs import add_bench, add_eval, add_finetune, add_pretrain, add_report
from bert_flax.errors import EXIT_BAD_INPUT, EXIT_RESUMABLE, StorageFailed, UserError

_OVERRIDE = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*=")
# In `bert-flax --help` order.
VERBS = (
    add_prepare,
    add_inspect_data,
    add_bench_data,
    add_bench,
    add_pretrain,
    add_finetune,
    add_eval,
    add_export,
    add_report,
    add_predict,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bert-flax",
        description="Pre-train BERT (MLM + NSP) in JAX/Flax. Bad input exits with code 2 and one line on stderr.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for bad input")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    for add_verb in VERBS:
        add_verb(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING)
    try:
        # Overrides may sit between options; argparse wants the positional block in one piece.
        overrides = [a for a in argv if _OVERRIDE.match(a)]
        args = build_parser().parse_args([a for a in argv if not _OVERRIDE.match(a)] + overrides)
        args.command_line = ["bert-flax", *argv]  # as typed, for the records a verb writes
        return args.handler(args)
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StorageFailed as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_RESUMABLE
