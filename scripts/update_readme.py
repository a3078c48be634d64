#!/usr/bin/env python
"""Rewrite README.md's generated blocks (the config and CLI references) from the code.

    python scripts/update_readme.py          # rewrite README.md in place
    python scripts/update_readme.py --check  # exit 1 when README.md is stale (what the test checks)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bert_flax.cli.reference import generated_sections, replace_generated

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether README.md is up to date")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    updated = replace_generated(text, generated_sections())
    if args.check:
        if updated != text:
            print(f"{README} is stale: run python scripts/update_readme.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(updated, encoding="utf-8")
    print(f"{README}: {'updated' if updated != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
