"""`bert-flax report RUN_DIR`: a run's summary table, loss / accuracy / learning-rate PNGs and report.md.

Reads config.yaml, metrics.jsonl and the names in checkpoints/, final/ and best/; no JAX. Figures are
drawn on matplotlib's Agg canvas directly (no pyplot), so importing this in a notebook leaves the
notebook's backend alone.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bert_flax.config import MODEL_PRESETS, Config, load_config
from bert_flax.errors import UserError
from bert_flax.formats import format_duration, json_number, read_number
from bert_flax.run.layout import RunDir, read_saved_eval
from bert_flax.run.metrics import read_metrics
from bert_flax.storage import AnyPath, GsPath, check_writable, to_path, write_file

DPI = 150
SMOOTH_FROM = 50  # train curves with this many points get a moving average over the raw (faint) curve
LOSS_KEYS = ("loss", "mlm_loss", "nsp_loss")
NAMES = {
    "loss": "loss",
    "mlm_loss": "MLM loss",
    "nsp_loss": "NSP loss",
    "mlm_accuracy": "MLM accuracy",
    "nsp_accuracy": "NSP accuracy",
    "macro_f1": "macro-F1",
    "exact_match": "exact match (%)",
    "f1": "F1 (%)",
}


@dataclasses.dataclass(frozen=True)
class Report:
    """What `write_report` found and wrote: the summary (as `--json` prints it) and the files."""

    run_dir: AnyPath
    summary: dict[str, Any]
    plots: dict[str, AnyPath]
    markdown: AnyPath


def direction(key: str) -> str | None:
    """Which way a metric improves: "min" (losses), "max" (scores), None (counts, bookkeeping: not plotted)."""
    if key.endswith(("loss", "perplexity")):
        return "min"
    if key.endswith(("accuracy", "f1", "exact_match")):
        return "max"
    return None


def read_events(run_dir: AnyPath) -> list[dict[str, Any]]:
    """metrics.jsonl's train and eval events (`read_metrics` skips a line cut by a crash)."""
    return [r for r in read_metrics(run_dir) if r.get("split") in ("train", "eval") and isinstance(r.get("step"), int)]


def check_run(run_dir: AnyPath) -> tuple[Config, list[dict[str, Any]]]:
    """The run's config and events, or a UserError; nothing is written before this passes."""
    if isinstance(run_dir, GsPath):  # the extra, the credentials and the bucket first
        check_writable(run_dir, "run dir", "pass the --run-dir of a pretrain or finetune run")
    if not run_dir.exists():
        raise UserError(f"run dir {run_dir} does not exist; pass the --run-dir of a pretrain or finetune run")
    if not RunDir(run_dir).config.is_file():
        raise UserError(
            f"{run_dir} is not a bert-flax run (no {RunDir.CONFIG}); pass the --run-dir of a pretrain or finetune run"
        )
    try:
        config = load_config(RunDir(run_dir).config)
    except UserError as err:
        raise UserError(f"run dir {run_dir} has a {RunDir.CONFIG} that cannot be read ({err})") from None
    events = read_events(run_dir)
    if not any(event["split"] == "train" for event in events):
        raise UserError(
            f"nothing to report: {run_dir} has no {RunDir.METRICS} events yet; "
            f"run bert-flax pretrain (or finetune) with --run-dir {run_dir} first"
        )
    if not isinstance(run_dir, GsPath):
        check_writable(RunDir(run_dir).plots, "plots dir", "move it away or copy the run dir somewhere writable")
    return config, events


def _metrics(event: dict[str, Any] | None) -> dict[str, float] | None:
    if event is None:
        return None
    values = {key: read_number(value) for key, value in event.items() if direction(key) is not None}
    return {"step": event["step"], **{key: value for key, value in values.items() if value is not None}}


def best_eval(evals: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per metric, the best finite eval value (lowest loss, highest score) and the first step reaching it."""
    best: dict[str, dict[str, float]] = {}
    for event in evals:
        for key, raw in event.items():
            value, sense = read_number(raw), direction(key)
            if sense is None or value is None or not math.isfinite(value):
                continue
            if key not in best or (value < best[key]["value"] if sense == "min" else value > best[key]["value"]):
                best[key] = {"value": value, "step": event["step"]}
    return best


def _model(config: Config) -> str:
    if config.model.init:
        return f"init {config.model.init} ({config.model.dtype})"
    shape = MODEL_PRESETS[config.model.preset]
    layers, hidden = shape["num_hidden_layers"], shape["hidden_size"]
    return f"preset {config.model.preset}, random init ({layers} layers, hidden {hidden}, {config.model.dtype})"


def summarize(run_dir: AnyPath, config: Config, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary that the table, report.md and `--json` show."""
    run = RunDir(run_dir)
    train = [e for e in events if e["split"] == "train"]
    evals = [e for e in events if e["split"] == "eval"]
    pretraining = any(key in e for e in train for key in ("mlm_loss", "nsp_loss"))
    rates = [r for r in (read_number(e.get("tokens_per_second")) for e in train) if r is not None and math.isfinite(r)]
    return {
        "run_dir": str(run_dir),
        "task": "pretrain" if pretraining else f"finetune {config.finetune.task}",
        "model": _model(config),
        "max_seq_len": config.data.max_seq_len,
        "global_batch": config.train.batch_size,
        "grad_accum_steps": config.train.grad_accum_steps,
        "objectives": list(config.train.objectives) if pretraining else None,
        "optimizer": {
            key: getattr(config.optim, key)
            for key in ("name", "learning_rate", "warmup_steps", "schedule", "weight_decay", "clip_norm")
        },
        "steps_done": max(e["step"] for e in train),
        "steps_planned": config.train.steps,
        "wall_time_seconds": read_number(events[-1].get("elapsed_seconds")),
        "median_tokens_per_second": statistics.median(rates) if rates else None,
        "final_train": _metrics(train[-1]),
        "final_eval": _metrics(evals[-1] if evals else None),
        "best_eval": best_eval(evals),
        "best_saved": read_saved_eval(run.best),
        "checkpoints": run.checkpoint_steps(),
        "final_present": run.final.is_dir(),
    }


def _cell(value: float | None) -> str:
    """A metric in a table: 4 significant digits, "-" when absent."""
    return "-" if value is None else f"{value:.4g}"


def run_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The run table: (label, value) rows."""
    optim, batch = summary["optimizer"], summary["global_batch"]
    accum = f", {summary['grad_accum_steps']} accumulation steps" if summary["grad_accum_steps"] > 1 else ""
    done, planned = summary["steps_done"], summary["steps_planned"]
    rate, saved, warmup = summary["median_tokens_per_second"], summary["best_saved"], optim["warmup_steps"]
    rows = [
        ("run", summary["run_dir"]),
        ("task", summary["task"]),
        ("model", summary["model"]),
        ("max_seq_len", str(summary["max_seq_len"])),
        ("global batch", f"{batch} sequences ({batch * summary['max_seq_len']:,} tokens){accum}"),
        ("objectives", ", ".join(summary["objectives"] or [])),
        (
            "optimizer",
            f"{optim['name']}, peak lr {optim['learning_rate']:g}, warmup {warmup} step{'s' * (warmup != 1)}, "
            f"{optim['schedule']} decay, weight decay {optim['weight_decay']:g}, clip {optim['clip_norm']:g}",
        ),
        ("steps", f"{done} / {planned}" + (" (finished)" if done >= planned else "")),
        ("wall time", "-" if summary["wall_time_seconds"] is None else format_duration(summary["wall_time_seconds"])),
        ("median tokens/s", "-" if rate is None else f"{rate:,.0f}"),
        ("checkpoints", ", ".join(map(str, summary["checkpoints"])) or "none"),
        ("final/", "present" if summary["final_present"] else "absent"),
    ]
    if saved is not None:
        shown = ", ".join(f"{k} {_cell(v)}" for k, v in saved.items() if k != "step" and direction(k))
        rows.append(("best/", f"step {saved.get('step')}: {shown}"))
    return [row for row in rows if row[1]]  # finetune runs have no objectives


def metric_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The metrics table: header, then per metric final train, final eval, best eval and its step."""
    train, last, best = summary["final_train"] or {}, summary["final_eval"] or {}, summary["best_eval"]
    present = [k for k in {**train, **last} if k != "step"]
    keys = [k for k in LOSS_KEYS if k in present] + [k for k in present if k not in LOSS_KEYS]
    header = ["metric", f"train (step {train.get('step', '-')})", f"eval (step {last.get('step', '-')})"]
    rows = [header + ["best eval", "best step"]]
    for key in keys:
        found = best.get(key)
        step = "-" if found is None else str(found["step"])
        rows.append([key, _cell(train.get(key)), _cell(last.get(key)), _cell(found and found["value"]), step])
    return rows


def format_table(summary: dict[str, Any]) -> str:
    """Both tables as aligned plain text."""
    width = max(len(label) for label, _ in run_rows(summary))
    lines = [f"{label:<{width}}  {value}" for label, value in run_rows(summary)]
    grid = metric_rows(summary)
    widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))]
    lines.append("")
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in grid]
    return "\n".join(lines)


def format_markdown(summary: dict[str, Any], plots: dict[str, AnyPath], run_dir: AnyPath) -> str:
    """report.md: the same tables in markdown, and the plots."""

    def cells(row: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"

    lines = [f"# bert-flax report: {run_dir.name}", "", "| | |", "|---|---|"]
    lines += [cells([label, value]) for label, value in run_rows(summary)]
    grid = metric_rows(summary)
    lines += ["", "## Metrics", "", cells(grid[0]), "|" + "---|" * len(grid[0])]
    lines += [cells(row) for row in grid[1:]]
    lines += ["", "## Plots", ""]
    lines += [f"![{name}]({path.relative_to(run_dir).as_posix()})\n" for name, path in plots.items()]
    return "\n".join(lines).rstrip() + "\n"


def _series(events: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(e["step"], read_number(e.get(key))) for e in events]
    points = [(step, value) for step, value in points if value is not None and math.isfinite(value)]
    steps, values = zip(*points) if points else ((), ())
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def _draw(ax: Any, train: list[dict[str, Any]], evals: list[dict[str, Any]], key: str, ylabel: str) -> None:
    """One panel: train (faint raw + moving average on long runs) and eval (line with markers)."""
    steps, values = _series(train, key)
    if len(steps) >= SMOOTH_FROM:
        window = max(2, len(steps) // 25)
        ax.plot(steps, values, color="C0", alpha=0.3, linewidth=0.8, label="train")
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color="C0", linewidth=1.5, label=f"train (mean of {window})")
    elif len(steps):
        ax.plot(steps, values, color="C0", linewidth=1.2, marker="." if len(steps) <= 20 else None, label="train")
    steps, values = _series(evals, key)
    if len(steps):
        ax.plot(steps, values, color="C1", linewidth=1.5, marker="o", markersize=5, label="eval")
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _panel_figure(title: str, count: int) -> tuple[Figure, list[Any]]:
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(4.6 * columns + 0.4, 3.4 * rows + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    axes = figure.subplots(rows, columns, sharex=True, squeeze=False).ravel()
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, list(axes[:count])


def _save(figure: Figure, path: AnyPath) -> AnyPath:
    return write_file(path, lambda f: figure.savefig(f, format="png", dpi=DPI))


def _legend(figure: Figure, axes: list[Any]) -> None:
    """One legend for all panels, below them: it never covers a curve."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    figure.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=len(entries))


def _present(events: list[dict[str, Any]], key: str) -> bool:
    return len(_series(events, key)[0]) > 0


def write_plots(run_dir: AnyPath, title: str, events: list[dict[str, Any]]) -> dict[str, AnyPath]:
    """loss.png, accuracy.png (when there are scores) and learning_rate.png in RUN_DIR/plots/."""
    train = [e for e in events if e["split"] == "train"]
    evals = [e for e in events if e["split"] == "eval"]
    keys = list(dict.fromkeys(k for e in events for k in e))
    losses = [k for k in LOSS_KEYS if _present(events, k)]
    components = [k for k in losses if k != "loss"]
    if len(components) < 2:  # one objective: its loss is the total loss
        losses = components or losses[:1]
    scores = [k for k in keys if direction(k) == "max" and _present(events, k)]
    plots_dir = RunDir(run_dir).plots
    plots_dir.mkdir(exist_ok=True)
    plots = {}
    for name, panel_keys, ylabel in (("loss", losses, "loss"), ("accuracy", scores, None)):
        if not panel_keys:
            continue
        shown = [NAMES.get(key, key.replace("_", " ")) for key in panel_keys]
        figure, axes = _panel_figure(f"{title}: {' / '.join(shown) if len(shown) <= 3 else 'scores'}", len(shown))
        for ax, key, panel_title in zip(axes, panel_keys, shown):
            _draw(ax, train, evals, key, ylabel or ("accuracy" if key.endswith("accuracy") else panel_title))
            if len(panel_keys) > 1:
                ax.set_title("total loss (MLM + NSP)" if key == "loss" else panel_title)
        _legend(figure, axes)
        plots[name] = _save(figure, plots_dir / f"{name}.png")
    if _present(train, "learning_rate"):
        figure, (ax,) = _panel_figure(f"{title}: learning rate", 1)
        ax.plot(*_series(train, "learning_rate"), color="C2", marker="." if len(train) <= 20 else None)
        ax.set(xlabel="step", ylabel="learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        ax.grid(alpha=0.3)
        plots["learning_rate"] = _save(figure, plots_dir / "learning_rate.png")
    return plots


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and Inf as strings (as in metrics.jsonl), paths as strings."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, (Path, GsPath)) else json_number(value)


def write_report(run_dir: str | AnyPath) -> Report:
    """Summarize a pretrain or finetune run dir (local or gs://); write RUN_DIR/plots/*.png and RUN_DIR/report.md."""
    run_dir = to_path(run_dir)
    config, events = check_run(run_dir)
    summary = summarize(run_dir, config, events)
    plots = write_plots(run_dir, f"{run_dir.resolve().name} ({summary['task']})", events)
    markdown = RunDir(run_dir).report
    text = format_markdown(summary, plots, run_dir)
    write_file(markdown, text)
    summary = _plain({**summary, "plots": plots, "report": markdown})
    return Report(run_dir, summary, plots, markdown)
