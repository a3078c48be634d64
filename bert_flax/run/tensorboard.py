"""TensorBoard event files, written by TensorBoard's own writer (no TensorFlow needed).

`tensorboard.summary.writer.event_file_writer.EventFileWriter` is the writer the `tensorboard`
package ships and PyTorch's SummaryWriter uses: TFRecord framing, CRCs and the Event protos are
TensorBoard's, maintained with the reader. We add only scalars (`simple_value`, float32: a finite
value beyond float32, say a huge perplexity, shows as inf). tensorboardX was the other candidate;
`import tensorboardX` imports torch whenever it is installed (2 s, in a JAX process), this does not.

On gs:// the writer cannot be pointed at the bucket: without TensorFlow, TensorBoard writes there through
fsspec, whose gcsfs turns every append into an overwrite (a file keeps only its last flush). The event
file is written into a local working copy of the directory, which `publish` uploads whole.
"""

from __future__ import annotations

import time
from typing import Mapping

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from bert_flax.storage import AnyPath, WorkingCopy

EVENT_FILE_MARKER = "tfevents"  # TensorBoard reads only files whose name contains it


def scalars_event(step: int, scalars: Mapping[str, float], wall_time: float) -> Event:
    values = [Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
    return Event(wall_time=wall_time, step=step, summary=Summary(value=values))


class TensorBoardLog:
    """The run's `tensorboard/` directory, started afresh: old event files are deleted, because the
    caller replays metrics.jsonl's kept events into the new file (no duplicated or orphan points).
    On gs:// they go at the first `publish`, which replaces the bucket's directory with the new file."""

    fresh = True  # starts empty: give it the kept history

    def __init__(self, directory: AnyPath) -> None:
        self.copy = WorkingCopy(directory)
        if self.copy.path.is_dir():
            for old in self.copy.path.iterdir():
                if EVENT_FILE_MARKER in old.name and old.is_file():
                    old.unlink()
        self.writer = EventFileWriter(str(self.copy.path))

    def log(self, step: int, scalars: Mapping[str, float], wall_time: float | None = None) -> None:
        """Add one event and flush it, so TensorBoard shows a running job up to its last logged step."""
        self.writer.add_event(scalars_event(step, scalars, time.time() if wall_time is None else wall_time))
        self.writer.flush()

    def publish(self) -> None:
        self.copy.publish()

    def close(self, failed: bool = False) -> None:
        self.writer.close()
        try:
            self.copy.publish()
        finally:
            self.copy.close()
