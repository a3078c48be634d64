"""The verbs on a trained model: `export` to PyTorch and `predict fill-mask|next-sentence|classify|qa`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bert_flax.cli.common import SOURCE_HELP, Handler, Parser, add_command
from bert_flax.errors import UserError


def add_export(verbs: Any) -> None:
    help = "write a Hugging Face PyTorch directory (config.json, model.safetensors, tokenizer, model card)"
    command = add_command(verbs, "export", _export, help)
    command.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    command.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="destination directory or gs://BUCKET/PREFIX (refused if it exists, unless --force)",
    )
    command.add_argument(
        "--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="dtype of the written weights"
    )
    command.add_argument("--verify", action="store_true", help="load it with PyTorch transformers and compare logits")
    command.add_argument("--force", action="store_true", help="replace an existing --out")


def _export(args: argparse.Namespace) -> int:
    from bert_flax.interop.export import export

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
    from bert_flax.interop.predict import Predictor, fill_mask

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
    from bert_flax.interop.predict import Predictor, next_sentence

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
    from bert_flax.finetune.predict import classify
    from bert_flax.interop.predict import Predictor

    rows = [row.split("\t", 1) for row in _read_inputs(args)]  # TEXT or TEXT<TAB>PAIR
    texts, pairs = [row[0] for row in rows], [row[1] if len(row) == 2 else None for row in rows]
    for text, pair, result in zip(texts, pairs, classify(Predictor(args.model), texts, pairs)):
        if args.json:
            print(json.dumps({"text": text, **({"pair": pair} if pair is not None else {}), **result}))
        else:
            print(f"{result['label']} {result['probability']:.3f}")
    return 0


def _qa(args: argparse.Namespace) -> int:
    from bert_flax.finetune.predict import answer_questions
    from bert_flax.interop.predict import Predictor

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


# predict task: handler, help, (metavar, help) of its inputs, --file line format
PREDICT_TASKS: dict[str, tuple[Handler, str, tuple[str, str], str]] = {
    "fill-mask": (
        _fill_mask,
        "top-k tokens for every [MASK] of every text",
        ("TEXT", "texts holding one or more [MASK]"),
        "TEXT",
    ),
    "next-sentence": (
        _next_sentence,
        "IsNext or NotNext for sentence A followed by sentence B",
        ("SENTENCE", "sentence A, then sentence B"),
        "A<TAB>B",
    ),
    "classify": (
        _classify,
        "the label and its probability for every text (a fine-tuned classification model)",
        ("TEXT", "texts to classify"),
        "TEXT or A<TAB>B for sentence pairs",
    ),
    "qa": (
        _qa,
        "the answer span in --context and its score for every question (a fine-tuned QA model)",
        ("QUESTION", "questions about the context"),
        "QUESTION",
    ),
}


def add_predict(verbs: Any) -> None:
    predict = verbs.add_parser(
        "predict", help="fill-mask or next-sentence with a pre-trained model; classify or qa with a fine-tuned one"
    )
    tasks = predict.add_subparsers(dest="task", required=True, parser_class=Parser)
    for name, (handler, help, (metavar, inputs_help), line_format) in PREDICT_TASKS.items():
        task = add_command(tasks, name, handler, help)
        task.add_argument("inputs", nargs="*", metavar=metavar, help=inputs_help)
        task.add_argument("--model", required=True, metavar="SOURCE", help=SOURCE_HELP)
        task.add_argument("--file", metavar="FILE", help=f"more inputs, one per line: {line_format}")
        task.add_argument("--json", action="store_true", help="one JSON object per input")
        if name == "fill-mask":
            task.add_argument("--top-k", type=int, metavar="K", default=5, help="candidates per [MASK] (default 5)")
        if name == "qa":
            context = task.add_mutually_exclusive_group(required=True)
            context.add_argument("--context", metavar="TEXT", help="the text the answers are taken from")
            context.add_argument("--context-file", metavar="FILE", help="a UTF-8 file holding the context")
