"""The training verbs: `pretrain`, `finetune classify|qa`, `eval`, `bench` and `report`."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from bert_flax.cli.common import (
    SOURCE_HELP,
    Parser,
    add_command,
    add_config_command,
    add_run_options,
    config_of,
    default_run_dir,
    print_columns,
    report_run,
)
from bert_flax.errors import UserError


def add_pretrain(verbs: Any) -> None:
    help = "pre-train BERT with MLM + NSP; rerunning on the same run dir resumes"
    add_run_options(add_config_command(verbs, "pretrain", _pretrain, help))


def _pretrain(args: argparse.Namespace) -> int:
    from bert_flax.pretrain import pretrain

    run_dir = args.run_dir or default_run_dir(args.config, "meditations")
    return report_run(pretrain(config_of(args), run_dir, stop_at=args.stop_at, show_progress=not args.quiet))


FINETUNE_TASKS = {
    "classify": "sequence classification from CSV / JSON Lines / a datasets name (accuracy, macro-F1)",
    "qa": "extractive question answering on SQuAD v1.1 / v2 data (exact match, F1)",
}


def add_finetune(verbs: Any) -> None:
    tune = verbs.add_parser("finetune", help="fine-tune a task head: classify (sequence classification) or qa")
    tasks = tune.add_subparsers(dest="task", required=True, parser_class=Parser)
    for name, help in FINETUNE_TASKS.items():
        add_run_options(add_config_command(tasks, name, _finetune, help))


def _finetune(args: argparse.Namespace) -> int:
    from bert_flax.finetune.run import finetune

    config = config_of(args, f"finetune.task={args.task}")
    run_dir = args.run_dir or default_run_dir(args.config, f"finetune-{args.task}")
    return report_run(finetune(config, run_dir, stop_at=args.stop_at, show_progress=not args.quiet))


def add_eval(verbs: Any) -> None:
    help = "MLM and NSP loss/accuracy (and perplexity) of a pre-trained model on the held-out documents"
    command = add_config_command(verbs, "eval", _eval, help)
    command.add_argument(
        "--model",
        metavar="SOURCE",
        help=f"{SOURCE_HELP}; a run's config.yaml defines the data unless --config is given "
        "(default: pretrain's default run dir for --config)",
    )
    command.add_argument("--json", action="store_true", help="one JSON object")


def _eval(args: argparse.Namespace) -> int:
    from bert_flax.evaluate import evaluate_model

    source = args.model or default_run_dir(args.config, "meditations")
    if not args.model and not Path(source).is_dir():
        raise UserError(
            f"no --model given and {source} (pretrain's default run dir for this config) does not exist; "
            "pass --model SOURCE"
        )
    result = evaluate_model(source, args.config, args.overrides)
    values = {**({"step": result.step} if result.step is not None else {}), **result.metrics}
    if args.json:
        print(json.dumps(values))
    else:
        print_columns(values)
    return 0


def add_bench(verbs: Any) -> None:
    from bert_flax.bench.baselines import BASELINES
    from bert_flax.bench.suite_matrix import SUITES
    from bert_flax.model.flops import FLOPS_HELP

    help = "time the training step: tokens/s, step time, compile time, memory, MFU"
    command = add_config_command(verbs, "bench", _bench, help)
    command.epilog = FLOPS_HELP
    command.add_argument(
        "--suite",
        nargs="?",
        const="",
        metavar="NAME",
        help="time a fixed matrix of shapes × rows (ours, every baseline), each row in its own process, and print "
        f"one table; NAME: {', '.join(SUITES)} (default: accelerator on a GPU or TPU, cpu on a CPU)",
    )
    command.add_argument("--steps", type=int, metavar="N", help="timed steps (default 20; --suite: the suite's)")
    warmup_help = "untimed steps after compilation (default 3; --suite: the suite's)"
    command.add_argument("--warmup", type=int, metavar="N", help=warmup_help)
    baselines = "; ".join(f"{name}: {baseline.help}" for name, baseline in BASELINES.items())
    command.add_argument(
        "--baseline",
        action="append",
        choices=list(BASELINES),
        help=f"also time a baseline step ({baselines}); with --suite, repeat it to run only those (default: all)",
    )
    command.add_argument(
        "--data",
        choices=("synthetic", "real"),
        help="synthetic batches of the real shapes (default), or the configured corpus through the input pipeline",
    )
    prefetch_help = "host batches built ahead in a thread (default 2; 0: inline)"
    command.add_argument("--prefetch", type=int, metavar="N", help=prefetch_help)
    peak = command.add_mutually_exclusive_group()
    peak_help = "peak TFLOP/s of one device, for MFU (default: the device kind's known peak, if listed)"
    peak.add_argument("--peak-tflops", type=float, metavar="X", help=peak_help)
    peak.add_argument("--measure-peak", action="store_true", help="measure the peak with a large matmul")
    compare_help = "also time the trainer's step with the other model.impl (hf / fast)"
    command.add_argument("--compare-impl", action="store_true", help=compare_help)
    packing_help = (
        "also time the trainer's step with the other data.packing, each on its own rows of the corpus "
        "(--data real, model.impl=fast): real tokens/s and examples/s, ratio_real_tokens_packed_to_unpacked"
    )
    command.add_argument("--compare-packing", action="store_true", help=packing_help)
    only_help = "only compile the step on shapes (nothing allocated or run): compile time and memory_analysis"
    command.add_argument("--compile-only", action="store_true", help=only_help)
    limit_help = "--suite: rows not started within this many minutes are skipped (default: the suite's)"
    command.add_argument("--time-limit", type=float, metavar="MINUTES", help=limit_help)
    out_help = "--suite: also write the table to FILE.md and the rows to FILE.json, rewritten after every row"
    command.add_argument("--out", metavar="FILE", help=out_help)
    command.add_argument("--json", action="store_true", help="one JSON object")


def _bench_suite(args: argparse.Namespace) -> int:
    from bert_flax.bench.suite import run_suite
    from bert_flax.bench.suite_report import render_markdown

    single = {"--data": args.data, "--prefetch": args.prefetch, "--compare-impl": args.compare_impl or None,
              "--compile-only": args.compile_only or None}
    misplaced = [option for option, value in single.items() if value is not None]
    if misplaced:
        raise UserError(f"--suite runs its own matrix; {', '.join(misplaced)} applies to a single bench")
    result = run_suite(
        args.suite or None,
        config_path=args.config,
        overrides=args.overrides,
        baselines=args.baseline,
        peak_tflops=args.peak_tflops,
        measure_peak=args.measure_peak,
        time_limit_minutes=args.time_limit,
        out=args.out,
        steps=args.steps,
        warmup=args.warmup,
        command=shlex.join(args.command_line),
    )
    print(json.dumps(result) if args.json else render_markdown(result).rstrip("\n"))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from bert_flax.bench.run import compile_only, run_bench

    if args.suite is not None:
        return _bench_suite(args)
    if args.time_limit is not None or args.out is not None:
        raise UserError("--time-limit and --out apply to --suite")
    if args.baseline and len(args.baseline) > 1:
        raise UserError(f"one --baseline at a time without --suite; got {', '.join(args.baseline)}")
    if args.compile_only:
        print(json.dumps(compile_only(config_of(args))))
        return 0
    result = run_bench(
        config_of(args),
        steps=20 if args.steps is None else args.steps,
        warmup=3 if args.warmup is None else args.warmup,
        baseline=args.baseline[0] if args.baseline else None,
        data=args.data or "synthetic",
        prefetch=2 if args.prefetch is None else args.prefetch,
        peak_tflops=args.peak_tflops,
        measure_peak=args.measure_peak,
        compare_impl=args.compare_impl,
        compare_packing=args.compare_packing,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    modes = [key for key, value in result.items() if isinstance(value, dict)]
    for key, value in result.items():
        if key not in modes:
            print(f"{key:<26}  {value}")
    for mode in modes:
        print(f"[{mode}]")
        for key, value in result[mode].items():
            print(f"  {key:<24}  {value:.4g}" if isinstance(value, float) else f"  {key:<24}  {value}")
    return 0


def add_report(verbs: Any) -> None:
    help = "summarize a pretrain or finetune run: a table, RUN_DIR/plots/*.png and RUN_DIR/report.md"
    command = add_command(verbs, "report", _report, help)
    run_help = "the --run-dir of a pretrain or finetune run (local or gs://)"
    command.add_argument("run_dir", metavar="RUN_DIR", help=run_help)
    command.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _report(args: argparse.Namespace) -> int:
    from bert_flax.run.report import format_table, write_report

    report = write_report(args.run_dir)
    if args.json:
        print(json.dumps(report.summary))
        return 0
    print(format_table(report.summary))
    written = [report.markdown, *report.plots.values()]
    print(f"\nwrote {', '.join(str(path.relative_to(report.run_dir)) for path in written)} in {report.run_dir}")
    return 0
