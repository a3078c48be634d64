"""Weights & Biases, optional: `log.wandb=true` logs the run's scalars under TensorBoard's tags.

`wandb` is imported only when asked for, and its absence is a UserError before the run dir is touched.
A resumed run continues the same W&B run through the id kept in RUN_DIR/wandb_id.txt.
"""

from __future__ import annotations

import tempfile
import uuid
from typing import Any, Mapping

from bert_flax.config import Config, config_to_dict
from bert_flax.errors import UserError
from bert_flax.run.layout import RunDir
from bert_flax.storage import AnyPath, is_remote, write_file


def import_wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise UserError(
            "log.wandb=true needs the wandb package: pip install wandb (or pip install -e '.[wandb]'), "
            "or set log.wandb=false"
        ) from None
    return wandb


class WandbLog:
    """One W&B run per run dir. W&B cannot take back points: after a crash, the steps logged past the
    checkpoint stay in W&B and their rerun (the same losses: resuming is exact) is ignored by W&B."""

    def __init__(self, config: Config, run_dir: AnyPath) -> None:
        wandb = import_wandb()
        id_path = RunDir(run_dir).wandb_id
        self.fresh = not id_path.is_file()  # a new W&B run: give it the kept history
        if self.fresh:
            write_file(id_path, uuid.uuid4().hex[:16] + "\n")
        settings = config.log
        try:
            self.run = wandb.init(
                project=settings.wandb_project,
                entity=settings.wandb_entity or None,
                name=settings.wandb_run_name or run_dir.resolve().name,
                dir=tempfile.gettempdir() if is_remote(run_dir) else str(run_dir),  # W&B's own files: local
                config=config_to_dict(config),
                resume="allow",
                id=id_path.read_text(encoding="utf-8").strip(),
            )
        except Exception as err:  # not logged in, no network, a bad entity: W&B's own error types
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            raise UserError(
                f"wandb.init failed ({reason}); run `wandb login`, set WANDB_MODE=offline, or set log.wandb=false"
            ) from err

    def log(self, step: int, scalars: Mapping[str, float], wall_time: float) -> None:
        self.run.log(dict(scalars), step=step)

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)
