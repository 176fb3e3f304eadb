"""The collector's loop: drain the ring buffer, batch, publish, heartbeat.

It reads two header fields of each record (kind and pid) to follow process
lifetimes; it never looks at captured bytes.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from s3slower.collector.probes import Probes
from s3slower.collector.publisher import Publisher
from s3slower.collector.tracker import Tracker
from s3slower.common.events import FIELD_OFFSETS, Kind, MalformedEvent, decode_event
from s3slower.common.protocol import MsgKind
from s3slower.common.targets import ProcInfo, Selection, Target

__all__ = ["Collector", "CollectorStats", "Tracker"]

BATCH_MAX_EVENTS = 1024          # one message carries at most this many records
BATCH_MAX_BYTES = 1024 * 1024    # ... or this many bytes (well under MAX_MESSAGE_BYTES)
BATCH_MAX_AGE_NS = 20_000_000    # a record waits at most 20 ms to be sent
HEARTBEAT_NS = 1_000_000_000
POLL_MS = 20
_KIND_OFF = FIELD_OFFSETS["kind"]
_PID_OFF = FIELD_OFFSETS["pid"]


@dataclass(frozen=True)
class CollectorStats:
    events: int
    batches: int
    traced_processes: int
    attached_libraries: int
    execs: int
    exits: int
    probes_attached: int      # uprobes in place (per pid in targets mode)
    attach_errors: int


class Collector:
    def __init__(self, probes_factory: Callable[[Callable[[bytes], None]], Probes],
                 publisher: Publisher, selection: Selection,
                 clock: Callable[[], int] = time.monotonic_ns):
        self.publisher = publisher
        self.clock = clock
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._batch_started = 0
        self._lifecycle: list[tuple[int, int, bytes]] = []   # kind, pid, record
        self._mmaps: set[int] = set()   # pids that mapped code since the last loop
        self._events = 0
        self._batches = 0
        self._execs = 0
        self._exits = 0
        self.probes = probes_factory(self._on_record)
        self.tracker = Tracker(self.probes, selection, self._announce)

    # Called from inside ring_buffer_poll for every record: keep it short.
    def _on_record(self, raw: bytes) -> None:
        kind = raw[_KIND_OFF]
        if kind == Kind.MMAP:           # for the tracker only
            self._mmaps.add(int.from_bytes(raw[_PID_OFF:_PID_OFF + 4], "little"))
            return
        if not self._batch:
            self._batch_started = self.clock()
        self._batch.append(raw)
        self._batch_bytes += len(raw)
        if kind == Kind.EXEC or kind == Kind.EXIT:
            self._lifecycle.append((kind, int.from_bytes(raw[_PID_OFF:_PID_OFF + 4], "little"),
                                    raw))
        if len(self._batch) >= BATCH_MAX_EVENTS or self._batch_bytes >= BATCH_MAX_BYTES:
            self._send_batch()

    def _send_batch(self) -> None:
        if not self._batch:
            return
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._events += len(batch)
        self._batches += 1
        self.publisher.publish(MsgKind.EVENTS, {"events": batch}, n_events=len(batch))

    def _announce(self, info: ProcInfo, target: Target) -> None:
        self.publisher.publish(MsgKind.PROCESS, {
            "pid": info.pid, "comm": info.comm, "exe": info.exe,
            "cmdline": info.cmdline[:512], "target": target.id,
            "labels": dict(target.prom_labels)})

    def start(self) -> None:
        self.publisher.publish(MsgKind.HELLO, {"pid": _getpid(), "version": _version()})
        self.tracker.start()

    def statistics(self) -> CollectorStats:
        return CollectorStats(self._events, self._batches, len(self.tracker.traced),
                              sum(1 for n in self.probes.attached.values() if n),
                              self._execs, self._exits, self.probes.probes_attached,
                              self.probes.attach_errors)

    def heartbeat(self) -> None:
        pub = self.publisher.statistics()
        lost = self.probes.lost_counts()
        lost["collector_outbox"] = pub.dropped_events
        stats = {**asdict(self.statistics()), **asdict(pub)}
        self.publisher.publish(MsgKind.HEARTBEAT, {"stats": stats, "lost": lost})

    def run(self, should_stop: Callable[[], bool],
            on_ready: Optional[Callable[[], None]] = None,
            every_second: Optional[Callable[[], None]] = None) -> None:
        """`every_second` runs with the heartbeat (config reload lives there)."""
        self.start()
        if on_ready:
            on_ready()
        next_hb = self.clock()
        while not should_stop():
            self.probes.poll(POLL_MS)
            self._handle_lifecycle()
            now = self.clock()
            if self._batch and now - self._batch_started >= BATCH_MAX_AGE_NS:
                self._send_batch()
            if now >= next_hb:
                self.heartbeat()
                next_hb = now + HEARTBEAT_NS
                if every_second:
                    every_second()
            self.publisher.flush()
        self.probes.consume()
        self._send_batch()
        self.heartbeat()
        self.publisher.publish(MsgKind.BYE, {})

    def _handle_lifecycle(self) -> None:
        events, self._lifecycle = self._lifecycle, []
        mapped, self._mmaps = self._mmaps, set()
        exited = set()
        for kind, pid, raw in events:
            if kind == Kind.EXEC:
                self._execs += 1
                self.tracker.on_exec(pid, _exec_seen(raw))
                exited.discard(pid)
            else:
                self._exits += 1
                self.tracker.on_exit(pid)
                exited.add(pid)
        for pid in mapped - exited:
            self.tracker.on_mmap(pid)


def _exec_seen(raw: bytes) -> Optional[ProcInfo]:
    """The process an EXEC record describes: its comm and the file executed."""
    try:
        ev = decode_event(raw)
    except MalformedEvent:
        return None
    exe = ev.data.split(b"\0", 1)[0].decode("utf-8", "replace")
    return ProcInfo(ev.pid, ev.comm, exe, "")


def _getpid() -> int:
    import os
    return os.getpid()


def _version() -> str:
    from s3slower import __version__
    return __version__
