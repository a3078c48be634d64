"""Take the input pipeline off the step's critical path: host batches are built ahead of the step.

A background thread pulls items from a host iterator and keeps up to `size` ready items in a
queue; the training loop only takes the next ready one and places it on the devices itself (all
JAX calls stay on the loop's thread). The order of the items is the iterator's, so anything
derived from it (positions, resume) is unchanged. JAX releases the GIL while a step runs, so the
NumPy pipeline overlaps with it.
"""

from __future__ import annotations

import queue
import threading
from typing import Generic, Iterator, TypeVar

Item = TypeVar("Item")

_DONE = object()  # the iterator is exhausted


class Prefetcher(Generic[Item]):
    """An iterator over the items of `iterator`, computed up to `size` items ahead.

    An exception in the producer is re-raised by `next()`. `close()` (or leaving a `with` block)
    stops the thread; a daemon thread also never blocks the interpreter's exit.
    """

    def __init__(self, iterator: Iterator[Item], size: int = 2) -> None:
        if size < 1:
            raise ValueError(f"prefetch size must be at least 1; got {size}")
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iterator,), daemon=True, name="prefetch")
        self._thread.start()

    def _put(self, item: object) -> bool:
        """Put unless stopped; False when the consumer has gone away."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, iterator: Iterator[Item]) -> None:
        try:
            for item in iterator:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as err:  # handed to the consumer, raised there
            self._put(err)

    def __iter__(self) -> "Prefetcher[Item]":
        return self

    def __next__(self) -> Item:
        item = self._queue.get()
        if item is _DONE:
            self._queue.put(_DONE)  # stay exhausted
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> "Prefetcher[Item]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def maybe_prefetch(iterator: Iterator[Item], size: int) -> Iterator[Item]:
    """`Prefetcher(iterator, size)`, or with size 0 the iterator itself (batches built on the critical path)."""
    return Prefetcher(iterator, size) if size > 0 else iterator
