"""What the verbs share: the parser class, the common arguments, config loading and result printing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from bert_flax.config import Config, load_config
from bert_flax.errors import EXIT_RESUMABLE, UserError

Handler = Callable[[argparse.Namespace], int]
QUIET_HELP = "no progress bar or progress lines on stderr (warnings, errors and the final line stay)"
SOURCE_HELP = (
    "a run dir (newest checkpoint), RUN_DIR/checkpoints/STEP, a save_pretrained dir (each local or gs://) or a hub name"
)


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as our one-line exit-2 errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see --help)")


def add_command(verbs: Any, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
    """A verb (or a task of one) with --debug; `handler(args)` runs it."""
    command = verbs.add_parser(name, help=help, description=help)
    command.add_argument("--debug", action="store_true", help="show tracebacks for bad input")
    command.set_defaults(handler=handler)
    return command


def add_config_command(verbs: Any, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
    """A verb driven by a config: --config FILE and `key.sub=value` overrides."""
    command = add_command(verbs, name, handler, help)
    command.add_argument("--config", metavar="FILE", help="YAML config file (default: the Meditations defaults)")
    command.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. train.steps=200")
    return command


def add_run_options(command: argparse.ArgumentParser) -> None:
    """--run-dir, --stop-at and --quiet of the training verbs."""
    command.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where config, metrics, checkpoints and final weights go: a directory or gs://BUCKET/PREFIX "
        "(default runs/CONFIG_NAME)",
    )
    stop_help = "stop after STEP with a checkpoint, as if preempted"
    command.add_argument("--stop-at", type=int, metavar="STEP", help=stop_help)
    command.add_argument("--quiet", action="store_true", help=QUIET_HELP)


def config_of(args: argparse.Namespace, *extra: str) -> Config:
    return load_config(args.config, [*args.overrides, *extra])


def default_run_dir(config_path: str | None, name_without_config: str) -> str:
    """runs/<config file's stem>, the run dir of pretrain/finetune without --run-dir (and eval's default model)."""
    return str(Path("runs") / (Path(config_path).stem if config_path else name_without_config))


def print_columns(values: dict[str, Any], float_format: str = "{:.6g}") -> None:
    """`key  value` lines, keys padded to one width."""
    width = max(map(len, values))
    shown = {key: float_format.format(v) if isinstance(v, float) else str(v) for key, v in values.items()}
    print("\n".join(f"{key:<{width}}  {value}" for key, value in shown.items()))


def report_run(result: Any) -> int:
    """The last line of a pretrain/finetune run, and its exit code (75: stopped by a signal, resumable)."""
    if result.stopped_by is not None:
        print(
            f"stopped by {result.stopped_by} after saving the checkpoint of step {result.step} in {result.run_dir}; "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_RESUMABLE
    status = "finished" if result.finished else f"stopped at step {result.step} (rerun to resume)"
    shown = " ".join(f"{key} {value:.4f}" for key, value in result.eval.items())
    print(f"{status}: {result.run_dir}" + (f"; eval {shown}" if shown else ""))
    return 0
