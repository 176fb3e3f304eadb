"""QueueWriter, the one writer thread of the log file and the terminal: put()
never blocks and counts what it drops; the thread writes in order, in batches;
close() writes what is queued, then runs on_stop in that thread."""
from __future__ import annotations

import threading

from s3slower.aggregator.queuewriter import QueueWriter


class Gate:
    """A write() that blocks until opened, recording every batch it was handed."""

    def __init__(self):
        self.open = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list] = []
        self.stopped_in: list[str] = []

    def write(self, items: list) -> None:
        self.entered.set()
        self.open.wait()
        self.batches.append(items)

    def on_stop(self) -> None:
        self.stopped_in.append(threading.current_thread().name)


def test_put_never_blocks_and_counts_what_a_full_queue_drops():
    g = Gate()
    w = QueueWriter(g.write, name="qw-test", max_queued=3, batch=2, on_stop=g.on_stop)
    w.put("first")
    assert g.entered.wait(30)          # the thread holds "first" inside write()
    for i in range(5):                 # the queue holds 3, the other 2 are dropped
        w.put(i)
    assert (w.queued, w.dropped) == (3, 2)
    g.open.set()
    w.close(timeout_s=30)
    assert g.batches == [["first"], [0, 1], [2]]       # in order, at most `batch` each
    assert g.stopped_in == ["qw-test"]


def test_after_close_puts_are_dropped_and_close_is_idempotent():
    g = Gate()
    g.open.set()
    w = QueueWriter(g.write, name="qw-test2", max_queued=10, batch=10, on_stop=g.on_stop)
    w.put("a")
    w.close(timeout_s=30)
    w.close(timeout_s=30)
    w.put("late")
    assert w.dropped == 1 and w.queued == 0
    assert [x for b in g.batches for x in b] == ["a"] and g.stopped_in == ["qw-test2"]
