"""`bert-flax ARGS...`, killed (SIGKILL) inside Orbax's save of step CRASH_STEP.

Usage: python crash_in_checkpoint_save.py CRASH_STEP ARGS...

The process dies after the step's files are written and before Orbax commits them: on a local
disk before the rename of its temporary directory, in a gs:// bucket (where Orbax cannot rename)
before its commit_success.txt. What a preemption in the middle of a save leaves behind.
"""

import os
import signal
import sys

from orbax.checkpoint._src.path import atomicity

crash_step = sys.argv[1]


def dying_before(commit):
    async def finalize_or_die(self) -> None:
        if self._final_path.name == crash_step:
            os.kill(os.getpid(), signal.SIGKILL)
        await commit(self)

    return finalize_or_die


for temporary_path in (atomicity.AtomicRenameTemporaryPath, atomicity.CommitFileTemporaryPath):
    temporary_path.finalize = dying_before(temporary_path.finalize)

from bert_flax.cli import main  # noqa: E402  (after the patch, as a user's process would import it)

sys.exit(main(sys.argv[2:]))
