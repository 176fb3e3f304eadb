"""The collector → aggregator wire protocol (docs/protocol.md), encode/decode pairs.

One ZeroMQ frame per message, a msgpack array:

    [version, kind, hostname, instance, seq, wall_offset_ns, body]

`instance` is random per collector start, `seq` counts every message of that
instance from 0, so a gap is loss and a new instance is a restart.
`wall_offset_ns` turns the kernel's monotonic stamps into wall time.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import msgpack

VERSION = 1
# Largest message an aggregator accepts (a batch is cut well below it).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class MsgKind(enum.IntEnum):
    HELLO = 1       # body: {"pid", "version"}, or after a move {"pid", "resync", "lost",
                    # "stats"} (docs/protocol.md, "Several aggregators")
    EVENTS = 2      # body: {"events": [raw ring-buffer record, ...]}
    HEARTBEAT = 3   # body: {"stats": {name: int}, "lost": {source: int}}
    PROCESS = 4     # body: {"pid", "comm", "exe", "cmdline", "target", "labels"[, "cgroup",
                    #        "ns_pid"]}
    BYE = 5         # body: {}  (clean shutdown: stop expecting heartbeats)


class ProtocolError(ValueError):
    """A message that does not follow docs/protocol.md."""


@dataclass(frozen=True)
class Message:
    kind: MsgKind
    hostname: str
    instance: int
    seq: int
    wall_offset_ns: int
    body: dict[str, Any] = field(default_factory=dict)


def encode(msg: Message) -> bytes:
    return msgpack.packb([VERSION, int(msg.kind), msg.hostname, msg.instance,
                          msg.seq, msg.wall_offset_ns, msg.body], use_bin_type=True)


def decode(frame: bytes) -> Message:
    """`frame`: bytes, or any object that exposes them (a ZeroMQ Frame)."""
    if len(frame) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(frame)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=True,
                              max_bin_len=MAX_MESSAGE_BYTES)
    except Exception as exc:  # msgpack raises many unrelated types
        raise ProtocolError(f"not msgpack: {exc.__class__.__name__}") from None
    if not isinstance(obj, list) or len(obj) != 7:
        raise ProtocolError("envelope is not a 7-element array")
    version, kind, hostname, instance, seq, offset, body = obj
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r}")
    try:
        kind = MsgKind(kind)
    except ValueError:
        raise ProtocolError(f"unknown message kind {kind!r}") from None
    if not (isinstance(hostname, str) and _is_int(instance) and _is_int(seq)
            and _is_int(offset) and isinstance(body, dict)):
        raise ProtocolError("envelope field of the wrong type")
    _check_body(kind, body)
    return Message(kind, hostname, instance, seq, offset, body)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_body(kind: MsgKind, body: dict) -> None:
    if kind is MsgKind.EVENTS:
        evs = body.get("events")
        if not isinstance(evs, list) or not all(isinstance(e, bytes) for e in evs):
            raise ProtocolError("EVENTS body needs a list of byte strings")
    elif kind is MsgKind.HEARTBEAT or (kind is MsgKind.HELLO and body.get("resync")):
        for key in ("stats", "lost"):
            d = body.get(key)
            if not isinstance(d, dict) or not all(isinstance(k, str) and _is_int(v)
                                                  for k, v in d.items()):
                raise ProtocolError(f"{kind.name} body needs a {key!r} map of counters")
    elif kind is MsgKind.PROCESS:
        if not _is_int(body.get("pid")):
            raise ProtocolError("PROCESS body needs an integer pid")
        labels = body.get("labels", {})
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ProtocolError("PROCESS labels must map strings to strings")
        if not isinstance(body.get("cgroup", ""), str) or not _is_int(body.get("ns_pid", 0)):
            raise ProtocolError("PROCESS cgroup must be a string, ns_pid an integer")
