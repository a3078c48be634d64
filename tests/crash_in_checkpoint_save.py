"""`bert-flax ARGS...`, killed (SIGKILL) inside Orbax's save of step CRASH_STEP.

Usage: python crash_in_checkpoint_save.py CRASH_STEP ARGS...

The process dies after the step's files are written to Orbax's temporary directory and before
the rename that commits them: what a preemption in the middle of a save leaves behind.
"""

import os
import signal
import sys

from orbax.checkpoint._src.path import atomicity

crash_step = sys.argv[1]
commit = atomicity.AtomicRenameTemporaryPath.finalize


async def finalize_or_die(self: atomicity.AtomicRenameTemporaryPath) -> None:
    if self._final_path.name == crash_step:
        os.kill(os.getpid(), signal.SIGKILL)
    await commit(self)


atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die

from bert_flax.cli import main  # noqa: E402  (after the patch, as a user's process would import it)

sys.exit(main(sys.argv[2:]))
