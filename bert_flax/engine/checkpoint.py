"""Orbax checkpoints of the train state (params, optimizer state, step, dropout key) and the data state.

The data state is whatever JSON the loop hands over with each batch (pre-training: its stream
position); the engine stores it beside the train state without reading it.

Saves are asynchronous; the last `checkpoint.keep` are kept. A checkpoint that cannot be read
is moved aside to RUN_DIR/unreadable_checkpoints/ with a warning and the previous one is used.

In a gs:// run dir Orbax writes through TensorStore's gcs driver. It cannot rename there, so a step is
written in place and finished by its `commit_success.txt` (layout.COMMIT_MARKER); Orbax never lists
or restores a step without it, and one left by a killed save is deleted before the run goes on. A
failure of the bucket during a save stops the run with a StorageFailed (exit 75: rerun to resume).
TensorStore retries a failed write 32 times, up to 32 s apart (Orbax offers no setting), so a save to
a bucket that went away fails about 15 minutes later.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from bert_flax.errors import UserError, first_line
from bert_flax.run.layout import RunDir, is_finished_step
from bert_flax.storage import AnyPath, GsPath, failures_stop_the_run, move, remove

log = logging.getLogger(__name__)


DataState = dict[str, Any]  # JSON: what the data side needs to continue after a step


@dataclasses.dataclass
class Restored:
    state: Any  # shaped and sharded like the template given to `restore_latest`
    step: int
    data: DataState


class Checkpoints:
    """A CheckpointManager over RUN_DIR/checkpoints holding {state, data} per step."""

    def __init__(self, run_dir: AnyPath, keep: int) -> None:
        run = RunDir(RunDir(run_dir).path.absolute())
        self.directory, self.unreadable = run.checkpoints, run.unreadable_checkpoints
        if isinstance(self.directory, GsPath):
            self._remove_unfinished(run)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(str(self.directory), options=options, item_names=("state", "data"))

    def _remove_unfinished(self, run: RunDir) -> None:
        """Process 0 deletes the gs:// steps a killed save left without their commit marker."""
        if jax.process_index() == 0:
            for step_dir in run.step_dirs():
                if not is_finished_step(step_dir):
                    log.warning(
                        "checkpoint step %s was never finished (a save was interrupted); deleting it", step_dir.name
                    )
                    remove(step_dir)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("bert_flax unfinished checkpoints removed")

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, data: DataState) -> None:
        """Start an async save; it returns once the arrays are copied off the devices."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data))
        with failures_stop_the_run(self.directory, f"saving checkpoint {step} to"):
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
                with failures_stop_the_run(self.directory, f"reading checkpoint {step} from"):
                    is_finished_step(self.directory / str(step))  # a bucket out of reach is not a damaged step
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

    def _move_aside(self, step: int) -> AnyPath:
        """Process 0 moves the step (the directory is shared); every process waits for it, then rescans."""
        aside = self.unreadable / str(step)
        if jax.process_index() == 0:
            aside.parent.mkdir(parents=True, exist_ok=True)
            if aside.exists():
                remove(aside)
            move(self.directory / str(step), aside)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"bert_flax checkpoint {step} moved aside")
        self.manager.reload()
        return aside

    def wait(self) -> None:
        with failures_stop_the_run(self.directory, "saving a checkpoint to"):
            self.manager.wait_until_finished()

    def close(self) -> None:
        with failures_stop_the_run(self.directory, "saving a checkpoint to"):
            self.manager.close()


def read_params(step_dir: AnyPath) -> Any:
    """The parameters of one saved step as NumPy arrays, whatever devices wrote them (no train state needed)."""
    item = str(step_dir.absolute() / "state")
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
