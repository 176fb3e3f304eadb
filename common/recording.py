"""The recording format of `collector --record` / `aggregator --replay` (pure).

A recording is MAGIC followed by the wire messages exactly as published
(docs/protocol.md), each prefixed by its length as a little-endian u32.
It carries captured bytes — request heads included — so files are created
mode 0600; it is a debugging artefact, not an output.
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

from s3slower.common import protocol
from s3slower.common.events import Event, decode_event

MAGIC = b"S3SREC1\n"
_LEN = struct.Struct("<I")


class RecordingError(ValueError):
    """A file that is not an s3slower recording, or is cut short."""


def frame(message: bytes) -> bytes:
    return _LEN.pack(len(message)) + message


def read_frames(f: BinaryIO) -> Iterator[bytes]:
    if f.read(len(MAGIC)) != MAGIC:
        raise RecordingError("not an s3slower recording (bad magic)")
    while True:
        head = f.read(_LEN.size)
        if not head:
            return
        if len(head) < _LEN.size:
            raise RecordingError("recording ends inside a length prefix")
        (n,) = _LEN.unpack(head)
        body = f.read(n)
        if len(body) < n:
            raise RecordingError("recording ends inside a message")
        yield body


def events(f: BinaryIO) -> Iterator[Event]:
    """Every ring-buffer record a recording holds, decoded, in published order."""
    for message in read_frames(f):
        msg = protocol.decode(message)
        if msg.kind is protocol.MsgKind.EVENTS:
            yield from map(decode_event, msg.body["events"])
