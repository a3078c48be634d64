"""How numbers are written for people and for JSON: durations, and NaN/Inf (which JSON cannot spell)."""

from __future__ import annotations

import math
from typing import Any

NON_FINITE = ("nan", "inf", "-inf")  # how metrics.jsonl and reports write the floats JSON lacks


def format_duration(seconds: float) -> str:
    """`3m05s`, or `2h01m` from an hour on; negative durations show as 0."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def json_number(value: Any) -> Any:
    """`value` ready for JSON: a NaN or Inf float as its string ("nan", "inf", "-inf"), anything else as is."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_number(value: Any) -> float | None:
    """A number written by `json_number` back as a float; None for anything that is not a number (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return float(value) if isinstance(value, str) and value in NON_FINITE else None
