"""`bert-flax VERB [--config FILE] [key.sub=value ...]`: parse, then call one library function.

Bad input (a UserError) is one line on stderr and exit code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from bert_flax.config import Config, load_config
from bert_flax.errors import EXIT_BAD_INPUT, EXIT_STOPPED_BY_SIGNAL, UserError


INPUTS = {  # predict task: (metavar, help, --file line format)
    "fill-mask": ("TEXT", "texts holding one or more [MASK]", "TEXT"),
    "next-sentence": ("SENTENCE", "sentence A, then sentence B", "A<TAB>B"),
    "classify": ("TEXT", "texts to classify", "TEXT or A<TAB>B for sentence pairs"),
    "qa": ("QUESTION", "questions about the context", "QUESTION"),
}
QUIET_HELP = "no progress bar or progress lines on stderr (warnings, errors and the final line stay)"
_OVERRIDE = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*=")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as our one-line exit-2 errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see --help)")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def _inspect_data(args: argparse.Namespace) -> int:
    from bert_flax.data.dataset import build_pretraining_data
    from bert_flax.data.inspect import example_records, render

    config = _config(args)
    data = build_pretraining_data(config)
    if args.split == "eval" and data.eval is None:
        raise UserError("there is no eval split (data.eval_fraction=0); use --split train")
    records = example_records(data, args.num, args.split)
    for index, record in enumerate(records):
        print(json.dumps(record) if args.json else render(record, index, config.train.nsp, data.tokenizer))
    return 0


def _bench_data(args: argparse.Namespace) -> int:
    from bert_flax.data.bench import bench_data

    result = bench_data(_config(args), seconds=args.seconds)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        print("\n".join(f"{key:<{width}}  {value}" for key, value in result.items()))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from bert_flax.throughput import run_bench

    result = run_bench(
        _config(args),
        steps=args.steps,
        warmup=args.warmup,
        baseline=args.baseline,
        data=args.data,
        prefetch=args.prefetch,
        peak_tflops=args.peak_tflops,
        measure_peak=args.measure_peak,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    modes = [mode for mode in ("ours", "hf-example") if mode in result]
    for key, value in result.items():
        if key not in modes:
            print(f"{key:<26}  {value}")
    for mode in modes:
        print(f"[{mode}]")
        for key, value in result[mode].items():
            print(f"  {key:<24}  {value:.4g}" if isinstance(value, float) else f"  {key:<24}  {value}")
    return 0


def _report_run(result: Any) -> int:
    """The last line of a pretrain/finetune run, and its exit code (75: stopped by a signal, resumable)."""
    if result.stopped_by is not None:
        print(
            f"stopped by {result.stopped_by} after saving the checkpoint of step {result.step} in {result.run_dir}; "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_STOPPED_BY_SIGNAL
    status = "finished" if result.finished else f"stopped at step {result.step} (rerun to resume)"
    shown = " ".join(f"{key} {value:.4f}" for key, value in result.eval.items())
    print(f"{status}: {result.run_dir}" + (f"; eval {shown}" if shown else ""))
    return 0


def _default_run_dir(config_path: str | None, name_without_config: str) -> str:
    """runs/<config file's stem>, the run dir of pretrain/finetune without --run-dir (and eval's default model)."""
    return str(Path("runs") / (Path(config_path).stem if config_path else name_without_config))


def _pretrain(args: argparse.Namespace) -> int:
    from bert_flax.train import pretrain

    config = _config(args)
    run_dir = args.run_dir or _default_run_dir(args.config, "meditations")
    result = pretrain(config, run_dir, stop_at=args.stop_at, show_progress=not args.quiet)
    return _report_run(result)


def _eval(args: argparse.Namespace) -> int:
    from bert_flax.evaluate import evaluate_model

    source = args.model or _default_run_dir(args.config, "meditations")
    if not args.model and not Path(source).is_dir():
        raise UserError(
            f"no --model given and {source} (pretrain's default run dir for this config) does not exist; pass --model SOURCE"
        )
    result = evaluate_model(source, args.config, args.overrides)
    values = {**({"step": result.step} if result.step is not None else {}), **result.metrics}
    if args.json:
        print(json.dumps(values))
    else:
        width = max(map(len, values))
        shown = {key: f"{value:.6g}" if isinstance(value, float) else str(value) for key, value in values.items()}
        print("\n".join(f"{key:<{width}}  {value}" for key, value in shown.items()))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from bert_flax.finetune.run import finetune

    config = load_config(args.config, [*args.overrides, f"finetune.task={args.task}"])
    run_dir = args.run_dir or _default_run_dir(args.config, f"finetune-{args.task}")
    result = finetune(config, run_dir, stop_at=args.stop_at, show_progress=not args.quiet)
    return _report_run(result)


def _export(args: argparse.Namespace) -> int:
    from bert_flax.export import export

    result = export(args.source, args.out, dtype=args.dtype, force=args.force, verify=args.verify)
    print(f"exported {result.source} to {result.out} ({result.num_tensors} tensors, {result.dtype})")
    if result.verification is not None:
        v = result.verification
        diffs = {k.removesuffix("_max_abs_diff").upper(): d for k, d in v.items() if k != "tolerance"}
        shown = ", ".join(f"{name} {d:.2e}" for name, d in diffs.items())
        print(f"verified with PyTorch transformers: max |Δ logits| {shown} (tolerance {v['tolerance']:g})")
    return 0


def _read_inputs(args: argparse.Namespace) -> list[str]:
    lines = list(args.inputs)
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise UserError(f"--file {path} does not exist")
        lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise UserError("no input: pass texts as arguments or --file FILE (one per line)")
    return lines


def _fill_mask(args: argparse.Namespace) -> int:
    from bert_flax.predict import Predictor, fill_mask

    texts = _read_inputs(args)
    results = fill_mask(Predictor(args.model), texts, args.top_k)
    for text, masks in zip(texts, results):
        if args.json:
            print(json.dumps({"text": text, "masks": masks}))
            continue
        print(text)
        for index, candidates in enumerate(masks):
            shown = "  ".join(f"{c['token']} {c['probability']:.3f}" for c in candidates)
            print(f"  [MASK] {index + 1}: {shown}")
    return 0


def _next_sentence(args: argparse.Namespace) -> int:
    from bert_flax.predict import Predictor, next_sentence

    if args.file:
        rows = _read_inputs(args)
        pairs = [tuple(row.split("\t", 1)) for row in rows]
        if any(len(pair) != 2 for pair in pairs):
            raise UserError(f"--file {args.file}: every line must be 'sentence A<TAB>sentence B'")
    elif len(args.inputs) == 2:
        pairs = [(args.inputs[0], args.inputs[1])]
    else:
        raise UserError(f"next-sentence takes two sentences (A and B) or --file; got {len(args.inputs)} argument(s)")
    for (a, b), result in zip(pairs, next_sentence(Predictor(args.model), pairs)):
        if args.json:
            print(json.dumps({"a": a, "b": b, **result}))
        else:
            print(f"{result['label']} {result['probability']:.3f}")
    return 0


def _classify(args: argparse.Namespace) -> int:
    from bert_flax.predict import Predictor
    from bert_flax.predict_heads import classify

    rows = [row.split("\t", 1) for row in _read_inputs(args)]  # TEXT or TEXT<TAB>PAIR
    texts, pairs = [row[0] for row in rows], [row[1] if len(row) == 2 else None for row in rows]
    for text, pair, result in zip(texts, pairs, classify(Predictor(args.model), texts, pairs)):
        if args.json:
            print(json.dumps({"text": text, **({"pair": pair} if pair is not None else {}), **result}))
        else:
            print(f"{result['label']} {result['probability']:.3f}")
    return 0


def _qa(args: argparse.Namespace) -> int:
    from bert_flax.predict import Predictor
    from bert_flax.predict_heads import answer_questions

    context = args.context
    if args.context_file:
        path = Path(args.context_file)
        if not path.is_file():
            raise UserError(f"--context-file {path} does not exist")
        context = path.read_text(encoding="utf-8")
    questions = _read_inputs(args)
    for question, result in zip(questions, answer_questions(Predictor(args.model), context, questions)):
        if args.json:
            print(json.dumps({"question": question, **result}))
        else:
            score = "-" if result["score"] is None else f"{result['score']:.3f}"
            print(f"{result['answer'] or '(no answer)'}\t{score}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from bert_flax.report import format_table, write_report

    report = write_report(args.run_dir)
    if args.json:
        print(json.dumps(report.summary))
        return 0
    print(format_table(report.summary))
    written = [report.markdown, *report.plots.values()]
    print(f"\nwrote {', '.join(str(path.relative_to(report.run_dir)) for path in written)} in {report.run_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bert-flax",
        description="Pre-train BERT (MLM + NSP) in JAX/Flax. Bad input exits with code 2 and one line on stderr.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for bad input")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    def verb(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help, description=help)
        sub.add_argument("--config", metavar="FILE", help="YAML config file (default: the Meditations defaults)")
        sub.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. train.steps=200")
        sub.add_argument("--debug", action="store_true", help="show tracebacks for bad input")
        sub.set_defaults(handler=handler)
        return sub

    inspect = verb("inspect-data", _inspect_data, "print training examples as the model will see them")
    inspect.add_argument("--num", type=int, metavar="N", default=4, help="number of examples (default 4)")
    inspect.add_argument("--json", action="store_true", help="one JSON object per line")
    inspect.add_argument("--split", choices=("train", "eval"), default="train", help="which examples")

    bench = verb("bench-data", _bench_data, "measure the data pipeline: preparation time and tokens/s")
    bench.add_argument(
        "--seconds", type=float, metavar="S", default=3.0, help="time spent producing batches (default 3)"
    )
    bench.add_argument("--json", action="store_true", help="one JSON object")

    from bert_flax.flops import BASELINES, FLOPS_HELP

    bench_model = verb("bench", _bench, "time the training step: tokens/s, step time, compile time, memory, MFU")
    bench_model.epilog = FLOPS_HELP
    bench_model.add_argument("--steps", type=int, metavar="N", default=20, help="timed steps (default 20)")
    bench_model.add_argument(
        "--warmup", type=int, metavar="N", default=3, help="untimed steps after compilation (default 3)"
    )
    bench_model.add_argument("--baseline", choices=BASELINES, help="also time Hugging Face's Flax example step")
    bench_model.add_argument(
        "--data",
        choices=("synthetic", "real"),
        default="synthetic",
        help="synthetic batches of the real shapes (default), or the configured corpus through the input pipeline",
    )
    bench_model.add_argument(
        "--prefetch",
        type=int,
        metavar="N",
        default=2,
        help="host batches built ahead in a thread (default 2; 0: inline)",
    )
    peak = bench_model.add_mutually_exclusive_group()
    peak.add_argument("--peak-tflops", type=float, metavar="X", help="peak TFLOP/s of one device, for MFU")
    peak.add_argument("--measure-peak", action="store_true", help="measure the peak with a large matmul")
    bench_model.add_argument("--json", action="store_true", help="one JSON object")

    train = verb("pretrain", _pretrain, "pre-train BERT with MLM + NSP; rerunning on the same run dir resumes")
    train.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where config, metrics, checkpoints and final weights go (default runs/CONFIG_NAME)",
    )
    train.add_argument("--stop-at", type=int, metavar="STEP", help="stop after STEP with a checkpoint, as if preempted")
    train.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    tune = verbs.add_parser("finetune", help="fine-tune a task head: classify (sequence classification) or qa")
    tune_tasks = tune.add_subparsers(dest="task", required=True, parser_class=_Parser)
    for name, help in (
        ("classify", "sequence classification from CSV / JSON Lines / a datasets name (accuracy, macro-F1)"),
        ("qa", "extractive question answering on SQuAD v1.1 / v2 data (exact match, F1)"),
    ):
        task = tune_tasks.add_parser(name, help=help, description=help)
        task.add_argument("--config", metavar="FILE", help="YAML config file")
        task.add_argument("--run-dir", metavar="DIR", help="where everything goes (default runs/CONFIG_NAME)")
        task.add_argument("--stop-at", type=int, metavar="STEP", help="stop after STEP with a checkpoint")
        task.add_argument("--quiet", action="store_true", help=QUIET_HELP)
        task.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
        task.add_argument("--debug", action="store_true", help="show tracebacks for bad input")
        task.set_defaults(handler=_finetune)

    source_help = "a run dir (newest checkpoint), RUN_DIR/checkpoints/STEP, a save_pretrained dir or a hub name"
    evaluator = verb(
        "eval", _eval, "MLM and NSP loss/accuracy (and perplexity) of a pre-trained model on the held-out documents"
    )
    evaluator.add_argument(
        "--model",
        metavar="SOURCE",
        help=f"{source_help}; a run's config.yaml defines the data unless --config is given "
        "(default: pretrain's default run dir for --config)",
    )
    evaluator.add_argument("--json", action="store_true", help="one JSON object")
    export_help = "write a Hugging Face PyTorch directory (config.json, model.safetensors, tokenizer, model card)"
    exporter = verbs.add_parser("export", help=export_help, description=export_help)
    exporter.add_argument("source", metavar="SOURCE", help=source_help)
    exporter.add_argument(
        "--out", required=True, metavar="DIR", help="destination directory (refused if it exists, unless --force)"
    )
    exporter.add_argument(
        "--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="dtype of the written weights"
    )
    exporter.add_argument("--verify", action="store_true", help="load it with PyTorch transformers and compare logits")
    exporter.add_argument("--force", action="store_true", help="replace an existing --out")
    exporter.add_argument("--debug", action="store_true", help="show tracebacks for bad input")
    exporter.set_defaults(handler=_export)

    report_help = "summarize a pretrain or finetune run: a table, RUN_DIR/plots/*.png and RUN_DIR/report.md"
    reporter = verbs.add_parser("report", help=report_help, description=report_help)
    reporter.add_argument("run_dir", metavar="RUN_DIR", help="the --run-dir of a pretrain or finetune run")
    reporter.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    reporter.add_argument("--debug", action="store_true", help="show tracebacks for bad input")
    reporter.set_defaults(handler=_report)

    predict = verbs.add_parser(
        "predict", help="fill-mask or next-sentence with a pre-trained model; classify or qa with a fine-tuned one"
    )
    tasks = predict.add_subparsers(dest="task", required=True, parser_class=_Parser)
    for name, handler, help in (
        ("fill-mask", _fill_mask, "top-k tokens for every [MASK] of every text"),
        ("next-sentence", _next_sentence, "IsNext or NotNext for sentence A followed by sentence B"),
        ("classify", _classify, "the label and its probability for every text (a fine-tuned classification model)"),
        ("qa", _qa, "the answer span in --context and its score for every question (a fine-tuned QA model)"),
    ):
        task = tasks.add_parser(name, help=help, description=help)
        task.add_argument("inputs", nargs="*", metavar=INPUTS[name][0], help=INPUTS[name][1])
        task.add_argument("--model", required=True, metavar="SOURCE", help=source_help)
        task.add_argument("--file", metavar="FILE", help=f"more inputs, one per line: {INPUTS[name][2]}")
        task.add_argument("--json", action="store_true", help="one JSON object per input")
        task.add_argument("--debug", action="store_true", help="show tracebacks for bad input")
        task.set_defaults(handler=handler)
        if name == "fill-mask":
            task.add_argument("--top-k", type=int, metavar="K", default=5, help="candidates per [MASK] (default 5)")
        if name == "qa":
            context = task.add_mutually_exclusive_group(required=True)
            context.add_argument("--context", metavar="TEXT", help="the text the answers are taken from")
            context.add_argument("--context-file", metavar="FILE", help="a UTF-8 file holding the context")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING)
    try:
        # Overrides may sit between options; argparse wants the positional block in one piece.
        overrides = [a for a in argv if _OVERRIDE.match(a)]
        args = build_parser().parse_args([a for a in argv if not _OVERRIDE.match(a)] + overrides)
        return args.handler(args)
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
