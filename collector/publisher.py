"""Publish messages to the aggregator over ZeroMQ without ever blocking.

Socket semantics, chosen on purpose:
  * PUSH: one aggregator pulls from many collectors; no subscriber filtering.
  * IMMEDIATE=1: queue only on completed connections, so while the
    aggregator is away messages stay in *our* outbox, whose bound we own.
  * SNDHWM=OUTBOX_ZMQ_HWM: what ZeroMQ itself may hold in flight.
  * LINGER=0: exit never waits on an absent peer.
The outbox holds at most MAX_OUTBOX_MESSAGES and MAX_OUTBOX_BYTES; a message
that does not fit is dropped before it gets a sequence number and counted
(`collector_outbox`), so the aggregator's gap count never counts it twice.
"""
from __future__ import annotations

import collections
import os
import random
import socket
from dataclasses import dataclass
from typing import BinaryIO, Optional

import zmq

from s3slower.common import protocol, recording
from s3slower.common.losses import Loss
from s3slower.common.protocol import Message, MsgKind
from s3slower.reasons import note

MAX_OUTBOX_MESSAGES = 20_000       # ~20 s of batches at a busy 1,000/s
MAX_OUTBOX_BYTES = 128 * 1024 * 1024
OUTBOX_ZMQ_HWM = 1_000


@dataclass(frozen=True)
class CurveClient:
    public: bytes
    secret: bytes
    server_public: bytes


@dataclass(frozen=True)
class PublisherStats:
    messages_sent: int
    bytes_sent: int
    outbox_messages: int
    outbox_bytes: int
    dropped_messages: int
    dropped_events: int


class Publisher:
    def __init__(self, ctx: zmq.Context, endpoint: str, *, bind: bool, hostname: str,
                 wall_offset_ns: int, curve: Optional[CurveClient] = None,
                 max_messages: int = MAX_OUTBOX_MESSAGES,
                 max_bytes: int = MAX_OUTBOX_BYTES,
                 record_to: Optional[BinaryIO] = None):
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.setsockopt(zmq.SNDHWM, OUTBOX_ZMQ_HWM)
        if curve:
            self.sock.curve_publickey = curve.public
            self.sock.curve_secretkey = curve.secret
            self.sock.curve_serverkey = curve.server_public
        if bind:
            self.sock.bind(endpoint)
            if endpoint.startswith("ipc://"):
                os.chmod(endpoint[len("ipc://"):], 0o660)
        else:
            self.sock.connect(endpoint)
        self.hostname = hostname
        self.instance = random.getrandbits(63)
        self.wall_offset_ns = wall_offset_ns
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._seq = 0
        self._outbox: collections.deque[tuple[bytes, int]] = collections.deque()
        self._outbox_bytes = 0
        self._sent = 0
        self._sent_bytes = 0
        self._dropped_messages = 0
        self._dropped_events = 0
        self._record_to = record_to
        if record_to is not None:
            record_to.write(recording.MAGIC)

    def publish(self, kind: MsgKind, body: dict, n_events: int = 0) -> bool:
        """Queue one message; False (and counted) when the outbox is full."""
        # size estimate before encoding: a dropped message must not take a seq
        estimate = sum(len(e) for e in body.get("events", ())) + 256
        if (len(self._outbox) >= self.max_messages
                or self._outbox_bytes + estimate > self.max_bytes):
            self._dropped_messages += 1
            self._dropped_events += n_events
            note(Loss.COLLECTOR_OUTBOX, f"outbox full ({len(self._outbox)} messages, "
                 f"{self._outbox_bytes} bytes): a {kind.name} message dropped", n_events)
            self.flush()
            return False
        frame = protocol.encode(Message(kind, self.hostname, self.instance, self._seq,
                                        self.wall_offset_ns, body))
        self._seq += 1
        if self._record_to is not None:
            self._record_to.write(recording.frame(frame))
        self._outbox.append((frame, n_events))
        self._outbox_bytes += len(frame)
        self.flush()
        return True

    def flush(self) -> None:
        while self._outbox:
            frame, _ = self._outbox[0]
            try:
                self.sock.send(frame, zmq.NOBLOCK)
            except zmq.Again:
                return
            self._outbox.popleft()
            self._outbox_bytes -= len(frame)
            self._sent += 1
            self._sent_bytes += len(frame)

    def statistics(self) -> PublisherStats:
        return PublisherStats(self._sent, self._sent_bytes, len(self._outbox),
                              self._outbox_bytes, self._dropped_messages,
                              self._dropped_events)

    def close(self) -> None:
        self.sock.close(0)
        if self._record_to is not None:
            self._record_to.close()


def default_hostname() -> str:
    return socket.gethostname()
