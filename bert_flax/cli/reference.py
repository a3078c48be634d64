"""README references generated from the code, so they cannot drift: the config reference from the typed
config sections (types, defaults and the comment above each field) and the CLI reference from the
argparse parser. `scripts/update_readme.py` writes them; a test checks the README holds them.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import typing
from typing import Any, Literal

from bert_flax.config import SECTIONS

_FIELD = re.compile(r"^\s{4}(\w+):")
_COMMENT = re.compile(r"^\s{4}# ?(.*)$")


def field_comments(cls: type) -> dict[str, str]:
    """The comment block above each field of a config section class; fields that follow one another
    share the block above the first (e.g. `dataset`, `dataset_config`)."""
    comments: dict[str, str] = {}
    block: list[str] = []
    after_field = False
    for line in inspect.getsource(cls).splitlines():
        if match := _COMMENT.match(line):
            block = block + [match.group(1)] if not after_field else [match.group(1)]
            after_field = False
        elif match := _FIELD.match(line):
            if block:
                comments[match.group(1)] = " ".join(block)
            after_field = True
        else:
            block, after_field = [], False
    return comments


def type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(str(a) for a in args)
    if origin is typing.Union:
        inner = next(a for a in args if a is not type(None))
        return f"{type_name(inner)} or null"
    if origin is tuple:
        return f"list of {type_name(args[0])}"
    return {bool: "bool", int: "int", float: "float", str: "string"}[annotation]


def _default(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    shown = json.dumps(value) if not isinstance(value, float) else repr(value)
    return f"`{shown}`"


def config_reference() -> str:
    """One table per config section: key, type, default and what it does."""
    parts = []
    for name, cls in SECTIONS.items():
        comments = field_comments(cls)
        hints = typing.get_type_hints(cls)
        rows = ["| key | type | default | what |", "|---|---|---|---|"]
        for field in dataclasses.fields(cls):
            if field.name not in comments:
                raise ValueError(f"config field {name}.{field.name} has no comment above it in bert_flax/config.py")
            description = comments[field.name].replace("|", "\\|")
            rows.append(
                f"| `{name}.{field.name}` | {type_name(hints[field.name])} | {_default(field.default)} | {description} |"
            )
        doc = (inspect.getdoc(cls) or "").splitlines()
        heading = f"**`{name}`**" + (f" — {doc[0]}" if doc and not doc[0].startswith(cls.__name__) else "")
        parts.append(heading + "\n\n" + "\n".join(rows))
    return "\n\n".join(parts) + "\n"


def _option(action: argparse.Action) -> str:
    if not action.option_strings:
        metavar = action.metavar or action.dest.upper()
        return f"{metavar} ..." if action.nargs in ("*", "+") else str(metavar)
    name = max(action.option_strings, key=len)
    if action.nargs == 0:
        return name
    if action.choices is not None and action.metavar is None:
        return f"{name} {{{','.join(map(str, action.choices))}}}"
    return f"{name} {action.metavar or action.dest.upper()}"


def _commands(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    """(words, parser) of every leaf command, in the parser's order."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return [(words, parser)]
    found = []
    for name, sub in subparsers[0].choices.items():
        found += _commands(sub, (*words, name))
    return found


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """A section per command: what it does and a table of its arguments (from argparse, as --help)."""
    parts = []
    for words, command in _commands(parser, ()):
        actions = [a for a in command._actions if not isinstance(a, argparse._HelpAction) and a.dest != "debug"]
        rows = ["| argument | what |", "|---|---|"]
        for action in actions:
            help_text = (action.help or "").replace("|", "\\|")
            if action.default not in (None, False, argparse.SUPPRESS) and "default" not in help_text:
                help_text += f" (default {action.default})"
            rows.append(f"| `{_option(action)}` | {help_text} |")
        parts.append(f"#### `bert-flax {' '.join(words)}`\n\n{command.description or ''}\n\n" + "\n".join(rows))
    return "\n\n".join(parts) + "\n"


def generated_sections() -> dict[str, str]:
    """The README's generated blocks by marker name."""
    from bert_flax.cli import build_parser

    return {"config-reference": config_reference(), "cli-reference": cli_reference(build_parser())}


def replace_generated(text: str, sections: dict[str, str]) -> str:
    """`text` with each `<!-- begin NAME -->…<!-- end NAME -->` block holding `sections[NAME]`."""
    for name, body in sections.items():
        pattern = re.compile(rf"(<!-- begin {name} [^>]*-->\n).*?(<!-- end {name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"no '<!-- begin {name} ... -->' / '<!-- end {name} -->' markers")
        text = pattern.sub(lambda m: m.group(1) + "\n" + body + "\n" + m.group(2), text)
    return text
