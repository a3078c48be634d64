"""`bert-flax bench --suite`'s result as a table: each row's ratio to each baseline, the per-row attention
check, and the markdown (title, header, checks, table). No JAX here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PEAK_SOURCES = {
    "known": "known for this device kind (bert_flax/bench/peaks.py: the vendor's dense figure)",
    "measured": "measured: a large square matmul on the device",
    "given": "given: --peak-tflops",
}
COLUMNS = ("model, L × B", "row", "dtype", "tokens/s", "real tokens/s", "MFU", "step ms (p10–p90)",
           "compile s", "peak memory", "process s")


def output_paths(out: str) -> tuple[Path, Path]:
    """`--out FILE`: the markdown at FILE.md, the JSON beside it at FILE.json (FILE may end in .md)."""
    markdown = Path(out) if out.endswith(".md") else Path(out + ".md")
    return markdown, markdown.with_suffix(".json")


def _ratios(row: dict[str, Any], rows: list[dict[str, Any]], baselines: list[str]) -> dict[str, float | None]:
    """The row's real tokens/s over each baseline's at the same shape (None: either has no number)."""
    out: dict[str, float | None] = {}
    for name in baselines:
        other = next((r for r in rows if r["row"] == name and r["shape"] == row["shape"]), None)
        usable = row["status"] == "ok" and other is not None and other["status"] == "ok" and other is not row
        out[name] = row["real_tokens_per_second"] / other["real_tokens_per_second"] if usable else None
    return out


def attention_check(rows: list[dict[str, Any]], backend: str) -> dict[str, Any]:
    """Whether each of our rows' compiled train step holds the attention kernel it should (cuDNN for fast on
    a GPU in half precision without attention dropout)."""
    name = "cuDNN fused attention in each of our rows' compiled train step"
    if backend != "gpu":
        return {"name": name, "status": "not applicable", "detail": f"backend {backend}: cuDNN is a GPU library"}
    ours = [r for r in rows if r["status"] == "ok" and r.get("expected_attention_kernel")]
    wrong = [f"{r['row']} at {r['shape']}: expected {r['expected_attention_kernel']}, found {r['attention_kernel']}"
             for r in ours if r["attention_kernel"] != r["expected_attention_kernel"]]
    if wrong:
        return {"name": name, "status": "FAIL", "detail": "; ".join(wrong)}
    found = ", ".join(f"{r['row']} at {r['shape']}: {r['attention_kernel']}" for r in ours) or "no row ran"
    return {"name": name, "status": "pass", "detail": found}


def finish(result: dict[str, Any]) -> dict[str, Any]:
    """The result with each row's ratios and the per-row attention check added (a new dict)."""
    rows = [{**row, "ratios": _ratios(row, result["rows"], result["baselines"])} for row in result["rows"]]
    check = attention_check(result["rows"], result["environment"]["backend"])
    return {**result, "checks": [*result["checks"], check], "rows": rows}


def _cuda(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"  # major·1000 + minor·10: 13000 → 13.0


def _cudnn(version: int) -> str:
    return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"  # 91300 → 9.13.0


def _device_line(env: dict[str, Any]) -> str:
    runtime = [
        f"NVIDIA driver {env['nvidia_driver']}" if env.get("nvidia_driver") else None,
        f"CUDA {_cuda(env['cuda_runtime'])}" if env.get("cuda_runtime") else None,
        f"cuDNN {_cudnn(env['cudnn'])}" if env.get("cudnn") else None,
        f"libtpu {env['libtpu']}" if env.get("libtpu") else None,
        f"runtime: {' '.join(env['platform_version'].split())}" if env.get("platform_version") else None,
    ]
    shown = "; ".join(part for part in runtime if part)
    return f"**device**: {env['devices']} × {env['device_kind']} ({env['backend']}; {shown}) · host CPU: {env['cpu']}"


def _header(result: dict[str, Any]) -> list[str]:
    env, versions = result["environment"], result["environment"]["versions"]
    limit = result["time_limit_minutes"]
    return [
        f"## `bert-flax bench --suite {result['suite']}`: {result['title']}",
        "",
        f"- **date**: {result['date']} · **command**: `{result['command']}`",
        f"- {_device_line(env)}",
        "- **versions**: " + ", ".join(f"{name} {version or 'not installed'}" for name, version in versions.items()),
        f"- **peak**: {result['peak_tflops']:.4g} TFLOP/s per device in {result['dtype']} "
        f"({PEAK_SOURCES.get(result['peak_source'], result['peak_source'])})",
        f"- **method**: each row in its own process; {result['steps']} timed steps after {result['warmup']} warm-up, "
        f"median step; synthetic full-length batches (a row named … real reads the corpus), vocabulary "
        f"{result['vocab_size']:,}, MLM + NSP, AdamW; model FLOPs as `bert-flax bench --help` states; "
        f"time limit {'none' if limit is None else f'{limit:g} min'}",
        f"- **wall time**: probe {result['probe_seconds']:g} s, checks {result['checks_seconds']:g} s, rows "
        f"{sum(row['seconds'] or 0 for row in result['rows']):.0f} s (each: its process s), "
        + (f"total {result['total_seconds']:g} s" if "total_seconds" in result else "still running"),
    ]


def _checks(result: dict[str, Any]) -> list[str]:
    lines = ["", "Checks before numbers:", ""]
    for check in result["checks"]:
        status = "**FAILED**" if check["status"] == "FAIL" else check["status"]
        lines.append(f"- {status} — {check['name']}: {check['detail']}")
    return lines


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _memory(row: dict[str, Any]) -> str:
    if row.get("device_peak_bytes"):
        return f"{row['device_peak_bytes'] / 1e9:.2f} GB"
    return f"{row['host_peak_rss_bytes'] / 1e9:.2f} GB host RSS" if row.get("host_peak_rss_bytes") else "—"


def _numbers(row: dict[str, Any]) -> list[str]:
    if row["status"] != "ok":
        return ["—"] * 6 + ["—" if row.get("seconds") is None else f"{row['seconds']:.0f}"]
    ms = [1000 * row[key] for key in ("step_seconds_median", "step_seconds_p10", "step_seconds_p90")]
    mfu = "—" if row.get("mfu") is None else f"{100 * row['mfu']:.1f}%"
    compile_s = "—" if row.get("compile_seconds") is None else f"{row['compile_seconds']:.1f}"
    return [f"{row['tokens_per_second']:,.0f}", f"{row['real_tokens_per_second']:,.0f}", mfu,
            f"{ms[0]:.4g} ({ms[1]:.4g}–{ms[2]:.4g})", compile_s, _memory(row), f"{row['seconds']:.0f}"]


def _by_shape(rows: list[dict[str, Any]], baselines: list[str]) -> list[dict[str, Any]]:
    """Rows grouped by shape (in the order shapes first ran), ours first, then the baselines in registry order."""
    shapes = list(dict.fromkeys(row["shape"] for row in rows))
    rank = {name: index for index, name in enumerate(baselines)}
    return sorted(rows, key=lambda row: (shapes.index(row["shape"]), row["baseline"], rank.get(row["row"], -1)))


def render_markdown(result: dict[str, Any]) -> str:
    """Title, header, checks, then one table row per suite row, grouped by shape."""
    baselines = result["baselines"]
    columns = [*COLUMNS, *(f"÷ {name}" for name in baselines), "status"]
    lines = [*_header(result), *_checks(result), "", "| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]
    for row in _by_shape(result["rows"], baselines):
        ratios = [f"{value:.2f}×" if value is not None else "—" for value in row.get("ratios", {}).values()]
        status = row["status"] if row["status"] == "ok" else f"{row['status']}: {row.get('error')}"
        cells = [row["shape"], row["row"], result["dtype"], *_numbers(row), *ratios, status]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    lines += [
        "",
        "tokens/s is B × L over the median step; real tokens/s counts non-padding positions only (the ratios use "
        "it: the row's over the baseline's at the same shape). compile s: ahead-of-time compilation of the step "
        "for JAX rows, the first step (compilation or eager start-up) for PyTorch. peak memory: the device's peak "
        "where the backend reports one, else the process's peak host RSS. process s: the row's process from start "
        "to exit (imports, model, compilation, steps).",
    ]
    return "\n".join(lines) + "\n"
