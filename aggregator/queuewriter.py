"""One daemon thread fed through a bounded queue: the log file's and the terminal's writer.

Invariants
* `put()` never blocks the tracing thread: an item that finds the queue full,
  or the writer closed, is dropped and counted (`dropped`, the caller's thread).
* The thread takes what is queued, up to `batch` items at a time, and hands
  it to `write(items)` in queue order; a slow `write` lets the queue fill,
  never the caller wait.
* `close()` lets the thread write what is queued, then `on_stop()` runs there
  (the log file closes its file); it waits at most about `timeout_s`.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable

_STOP = object()


class QueueWriter:
    def __init__(self, write: Callable[[list], None], *, name: str, max_queued: int,
                 batch: int, on_stop: Callable[[], None] = lambda: None):
        self.dropped = 0
        self._write = write
        self._batch = batch
        self._on_stop = on_stop
        self._q: queue.Queue = queue.Queue(maxsize=max_queued)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: object) -> None:
        if self._closed:
            self.dropped += 1
            return
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    @property
    def queued(self) -> int:
        return self._q.qsize()

    def close(self, timeout_s: float) -> None:
        """Write what is queued and stop the thread (waits at most ~timeout_s)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._q.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            batch = [self._q.get()]
            while len(batch) < self._batch:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            items = [item for item in batch if item is not _STOP]
            if items:
                self._write(items)
            if len(items) < len(batch):
                self._on_stop()
                return
