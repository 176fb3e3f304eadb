"""The aggregator's loop: receive ▸ decode ▸ pipeline ▸ outputs.

Outputs ("sinks") take final records; `--min-latency` is applied once here so
the terminal, log file and metrics always agree.  Opaque TLS lines
(aggregator/opaque.py) go to the sinks that have `emit_opaque`, never to
`emit`: a sink of requests sees only requests.  Multipart upload lines
(aggregator/multipart.py) go the same way to the sinks that have
`emit_multipart`.  Each tick builds one ledger
snapshot (aggregator/ledger.py) that every sink's tick reads; `snapshot` is
the latest, for the stop summary.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Mapping, Optional, Protocol

from s3slower.aggregator.ledger import Book, Snapshot
from s3slower.aggregator.multipart import MultipartUpload
from s3slower.aggregator.opaque import OpaqueTls
from s3slower.aggregator.pipeline import Output, Pipeline
from s3slower.aggregator.records import Record
from s3slower.aggregator.subscriber import Subscriber
from s3slower.common import protocol
from s3slower.common.losses import Loss
from s3slower.common.protocol import MsgKind

TICK_NS = 1_000_000_000
MAX_WAIT_MS = 1000          # a stop asked for by a signal is seen within this


class Sink(Protocol):
    def emit(self, rec: Record) -> None: ...
    def tick(self, snap: Snapshot, now_wall_ns: int) -> None: ...
    def close(self) -> None: ...


class Aggregator:
    def __init__(self, subscriber: Subscriber, pipeline: Pipeline, sinks: Iterable[Sink],
                 *, min_latency_ms: float = 0.0,
                 clock: Callable[[], int] = time.time_ns,
                 loss_sources: Iterable[Callable[[], Mapping[Loss, int]]] = ()):
        """`loss_sources`: the outputs' and subscriber's ledger totals."""
        self.subscriber = subscriber
        self.pipeline = pipeline
        self.sinks = list(sinks)
        self._opaque_sinks = [s for s in self.sinks if hasattr(s, "emit_opaque")]
        self._multipart_sinks = [s for s in self.sinks if hasattr(s, "emit_multipart")]
        self.min_latency_ns = int(min_latency_ms * 1e6)
        self.clock = clock
        self.book = Book(loss_sources)
        self.byes = 0
        self.hellos = 0

    @property
    def snapshot(self) -> Snapshot:
        """The last tick's (run() and replay end with a tick)."""
        return self.book.last

    def set_min_latency(self, ms: float) -> None:
        self.min_latency_ns = int(ms * 1e6)

    def _emit(self, recs: list[Output]) -> None:
        for r in recs:
            if isinstance(r, OpaqueTls):
                for s in self._opaque_sinks:
                    s.emit_opaque(r)
                continue
            if isinstance(r, MultipartUpload):
                for s in self._multipart_sinks:
                    s.emit_multipart(r)
                continue
            if r.latency_ns < self.min_latency_ns and r.complete:
                continue
            for s in self.sinks:
                s.emit(r)

    def handle_frames(self, frames: list) -> None:
        """`frames`: bytes, or ZeroMQ Frames (protocol.decode reads either)."""
        now = self.clock()
        for frame in frames:
            try:
                msg = protocol.decode(frame)
            except protocol.ProtocolError as exc:
                self.pipeline.count_malformed(f"frame of {len(frame)} bytes: {exc}")
                continue
            self.handle_message(msg, now)

    def handle_message(self, msg: protocol.Message, now: int) -> None:
        if msg.kind is MsgKind.BYE:
            self.byes += 1
        elif msg.kind is MsgKind.HELLO:
            self.hellos += 1
        self._emit(self.pipeline.handle(msg, now))

    def tick(self) -> None:
        now = self.clock()
        self._emit(self.pipeline.tick(now))
        snap = self.book.snapshot(self.pipeline.statistics())
        for s in self.sinks:
            s.tick(snap, now)

    def run(self, should_stop: Callable[[], bool],
            on_ready: Optional[Callable[[], None]] = None,
            every_second: Optional[Callable[[], None]] = None) -> None:
        """`every_second` runs with the tick (config reload lives there)."""
        if on_ready:
            on_ready()
        next_tick = time.monotonic_ns()
        while not should_stop():
            # asleep until a frame or the next tick: no timer of its own
            wait_ms = max(0, next_tick - time.monotonic_ns()) // 1_000_000
            self.handle_frames(self.subscriber.receive(min(wait_ms, MAX_WAIT_MS)))
            if time.monotonic_ns() >= next_tick:
                self.tick()
                next_tick = time.monotonic_ns() + TICK_NS
                if every_second:
                    every_second()
        # drain what is already here, then flush outputs
        while True:
            frames = self.subscriber.receive(0)
            if not frames:
                break
            self.handle_frames(frames)
        self.tick()
