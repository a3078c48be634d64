"""`bert-flax ARGS...` whose Cloud Storage server is killed (SIGKILL to SERVER_PID) as the save of
step STEP starts: the bucket goes away in the middle of a run.

Usage: python bucket_down_in_checkpoint_save.py STEP SERVER_PID ARGS...

The clients' retries are bounded here, as only a test may: TensorStore's (32 tries over about 15
minutes by default; Orbax offers no setting, so its private contexts are edited) and gcsfs' (6 tries
over about 30 s; its waits are shortened). Everything else is the user's process.
"""

import asyncio
import os
import signal
import socket
import sys
import time
import types

import gcsfs.retry
import orbax.checkpoint as ocp
from orbax.checkpoint._src.serialization import tensorstore_utils

step, server_pid = int(sys.argv[1]), int(sys.argv[2])

for context in (tensorstore_utils._BASE_TS_CONTEXT, tensorstore_utils._DEFAULT_OCDBT_TS_CONTEXT):
    context["gcs_request_retries"] = {"max_retries": 2, "initial_delay": "0.1s", "max_delay": "0.2s"}
gcsfs.retry.asyncio = types.SimpleNamespace(sleep=lambda seconds: asyncio.sleep(min(seconds, 0.05)))

save = ocp.CheckpointManager.save


def save_after_killing_the_server(self, save_step, *args, **kwargs):
    if save_step == step:
        os.kill(server_pid, signal.SIGKILL)
        port = int(os.environ["STORAGE_EMULATOR_HOST"].rsplit(":", 1)[1])
        while True:  # until the port refuses connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                time.sleep(0.05)
            except OSError:
                break
    return save(self, save_step, *args, **kwargs)


ocp.CheckpointManager.save = save_after_killing_the_server

from bert_flax.cli import main  # noqa: E402  (after the patches, as a user's process would import it)

sys.exit(main(sys.argv[3:]))
