"""Orbax checkpoints of the train state (params, optimizer state, step, dropout key) and the data state.

The data state is whatever JSON the loop hands over with each batch (pre-training: its stream
position); the engine stores it beside the train state without reading it.

Saves are asynchronous; the last `checkpoint.keep` are kept. A checkpoint that cannot be read
is moved aside to RUN_DIR/unreadable_checkpoints/ with a warning and the previous one is used.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from bert_flax.errors import UserError, first_line
from bert_flax.run.layout import RunDir

log = logging.getLogger(__name__)


DataState = dict[str, Any]  # JSON: what the data side needs to continue after a step


@dataclasses.dataclass
class Restored:
    state: Any  # shaped and sharded like the template given to `restore_latest`
    step: int
    data: DataState


class Checkpoints:
    """A CheckpointManager over RUN_DIR/checkpoints holding {state, data} per step."""

    def __init__(self, run_dir: Path, keep: int) -> None:
        run = RunDir(Path(run_dir).absolute())
        self.directory, self.unreadable = run.checkpoints, run.unreadable_checkpoints
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, data: DataState) -> None:
        """Start an async save; it returns once the arrays are copied off the devices."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data))
        self.manager.save(step, args=args, force=True)

    def restore_latest(self, like_state: Any) -> Restored | None:
        """The newest readable checkpoint, its state shaped and sharded like `like_state`; None without any."""
        steps = self.all_steps()
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        for step in reversed(steps):
            try:
                restored = self.manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore())
                )
                return Restored(restored["state"], step, restored["data"])
            except Exception as err:  # orbax and tensorstore raise many types for damaged files
                aside = self._move_aside(step)
                log.warning(
                    "checkpoint step %d is unreadable (%s); moved it to %s, trying the previous one",
                    step,
                    first_line(err, 200),
                    aside,
                )
        if steps:
            raise UserError(
                f"no readable checkpoint in {self.directory} (steps {', '.join(map(str, steps))} failed to load); "
                f"see {self.unreadable} and start a new run with another --run-dir"
            )
        return None

    def _move_aside(self, step: int) -> Path:
        """Process 0 moves the step (the directory is shared); every process waits for it, then rescans."""
        aside = self.unreadable / str(step)
        if jax.process_index() == 0:
            aside.parent.mkdir(parents=True, exist_ok=True)
            if aside.exists():
                shutil.rmtree(aside)
            shutil.move(str(self.directory / str(step)), aside)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"bert_flax checkpoint {step} moved aside")
        self.manager.reload()
        return aside

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def read_params(step_dir: Path) -> Any:
    """The parameters of one saved step as NumPy arrays, whatever devices wrote them (no train state needed)."""
    item = Path(step_dir).absolute() / "state"
    checkpointer = ocp.PyTreeCheckpointer()
    absl_level = logging.getLogger("absl").level
    logging.getLogger("absl").setLevel(logging.ERROR)  # "Metadata file does not exist" is expected here
    try:
        tree = checkpointer.metadata(item).item_metadata.tree
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        state = checkpointer.restore(item, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    except Exception as err:  # damaged or foreign files: orbax and tensorstore raise many types
        raise UserError(f"cannot read checkpoint {step_dir} ({first_line(err, 200)}); pass another step or run") from None
    finally:
        logging.getLogger("absl").setLevel(absl_level)
    return state["params"]
