"""Replay a recording through the whole aggregator, offline and deterministic.

Time during replay is the recording's own: the latest event return stamp
seen so far (wall clock), so timeouts fire as they would have live.  At the
end every request still waiting is emitted as incomplete.
"""
from __future__ import annotations

from typing import BinaryIO

from s3slower.aggregator.service import Aggregator
from s3slower.common import protocol, recording
from s3slower.common.events import FIELD_OFFSETS, HEADER_SIZE

_END = FIELD_OFFSETS["end_ns"]
TICK_NS = 1_000_000_000


class _RecordingClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def advance(self, frame: bytes) -> None:
        try:
            msg = protocol.decode(frame)
        except protocol.ProtocolError:
            return
        for raw in msg.body.get("events", ()) if msg.kind is protocol.MsgKind.EVENTS else ():
            if len(raw) >= HEADER_SIZE:
                end = int.from_bytes(raw[_END:_END + 8], "little") + msg.wall_offset_ns
                self.now = max(self.now, end)


def replay(f: BinaryIO, agg: Aggregator) -> None:
    clock = _RecordingClock()
    agg.clock = clock
    next_tick = 0
    for frame in recording.read_frames(f):
        clock.advance(frame)
        agg.handle_frames([frame])
        if clock.now >= next_tick:
            agg.tick()
            next_tick = clock.now + TICK_NS
    clock.now += agg.pipeline.request_timeout_ns + TICK_NS
    agg.tick()
