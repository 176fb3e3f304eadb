"""Replay a recording through the whole aggregator, offline and deterministic.

Time during replay is the recording's own: the latest event return stamp
seen so far (wall clock), so timeouts fire as they would have live.  At the
end every request still waiting is emitted as incomplete.
"""
from __future__ import annotations

from typing import BinaryIO

from s3slower.aggregator.service import Aggregator
from s3slower.common import protocol, recording
from s3slower.common.events import HEADER_SIZE, peek_end_ns

TICK_NS = 1_000_000_000


def _latest_return(msg: protocol.Message) -> int:
    """The wall-clock return stamp of the newest event in an EVENTS message."""
    latest = 0
    if msg.kind is protocol.MsgKind.EVENTS:
        for raw in msg.body["events"]:
            if len(raw) >= HEADER_SIZE:
                latest = max(latest, peek_end_ns(raw))
    return latest + msg.wall_offset_ns if latest else 0


def replay(f: BinaryIO, agg: Aggregator) -> None:
    now = 0
    agg.clock = lambda: now
    next_tick = 0
    for frame in recording.read_frames(f):
        try:
            msg = protocol.decode(frame)
        except protocol.ProtocolError as exc:
            agg.pipeline.count_malformed(f"recorded frame of {len(frame)} bytes: {exc}")
            continue
        now = max(now, _latest_return(msg))
        agg.handle_message(msg, now)
        if now >= next_tick:
            agg.tick()
            next_tick = now + TICK_NS
    now += agg.pipeline.request_timeout_ns + TICK_NS
    agg.tick()
