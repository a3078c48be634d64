"""Run a command and report its wall time and the peak RSS of its whole process tree (workers included).

    python scripts/peak_rss.py -- bert-flax prepare data.path=big.txt

`/usr/bin/time -v` reports the largest single process; `bert-flax prepare` spreads its work over
worker processes, so this samples the sum of the tree's resident memory (Linux /proc, every 0.1 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def tree_rss_kb(root: int) -> int:
    """Resident memory of `root` and all its descendants, in KiB."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
        except OSError:
            continue
        todo.extend(tree.get(pid, []))
    return total


def main(argv: list[str]) -> int:
    command = argv[1:] if argv and argv[0] == "--" else argv
    start = time.perf_counter()
    process = subprocess.Popen(command)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss_kb(process.pid))
        time.sleep(0.1)
    wall = time.perf_counter() - start
    print(f"peak_rss_tree_mb={peak / 1024:.0f} wall_s={wall:.1f} exit={process.returncode}", file=sys.stderr)
    return process.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
