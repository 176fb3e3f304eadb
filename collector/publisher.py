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

Given several aggregator endpoints (connect only), the publisher sends through
collector/links.py: one socket per endpoint, the one in use chosen by
rendezvous hashing of the host name, moved when it stops answering.  After
a move it first sends the new aggregator a HELLO that resynchronises the
sequence (docs/protocol.md), and `take_moved()` tells the collector to
announce its processes again there.
"""
from __future__ import annotations

import collections
import os
import random
import socket
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Optional, Sequence, Union

import zmq

from s3slower.collector.links import (HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS,
                                     RECONNECT_IVL_MAX_MS, Links)
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
    def __init__(self, ctx: zmq.Context, endpoint: Union[str, Sequence[str]], *, bind: bool,
                 hostname: str, wall_offset_ns: int, curve: Optional[CurveClient] = None,
                 max_messages: int = MAX_OUTBOX_MESSAGES,
                 max_bytes: int = MAX_OUTBOX_BYTES,
                 record_to: Optional[BinaryIO] = None,
                 clock: Callable[[], int] = time.monotonic_ns):
        """`endpoint`: one, or (connect only) several aggregators to choose from
        (`clock`: their failover's, collector/links.py)."""
        endpoints = (endpoint,) if isinstance(endpoint, str) else tuple(endpoint)
        self.links: Optional[Links] = None
        if len(endpoints) > 1:
            self.sock = None
            self.links = Links(lambda: push_socket(ctx, curve, heartbeats=True), endpoints,
                               hostname, clock)
        elif bind:
            self.sock = push_socket(ctx, curve)
            self.sock.bind(endpoints[0])
            if endpoints[0].startswith("ipc://"):
                os.chmod(endpoints[0][len("ipc://"):], 0o660)
        else:
            self.sock = push_socket(ctx, curve)
            self.sock.connect(endpoints[0])
        self.hostname = hostname
        self.instance = random.getrandbits(63)
        self.wall_offset_ns = wall_offset_ns
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._seq = 0
        # (frame, events, seq, a HEARTBEAT's body or None)
        self._outbox: collections.deque[tuple[bytes, int, int, Optional[dict]]] = \
            collections.deque()
        self._last_beat: dict = {}      # the last HEARTBEAT body handed to a socket
        self._outbox_bytes = 0
        self._sent = 0
        self._sent_bytes = 0
        self._dropped_messages = 0
        self._dropped_events = 0
        self._record_to = record_to
        self._resync = self._moved = False
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
        self._outbox.append((frame, n_events, self._seq - 1,
                             body if kind is MsgKind.HEARTBEAT else None))
        self._outbox_bytes += len(frame)
        self.flush()
        return True

    def flush(self) -> None:
        if self.links is not None and self.links.poll():
            self._resync = self._moved = self._sent > 0
        if self._resync and not self._send_resync():
            return
        while self._outbox:
            frame, n_events, _, beat = self._outbox[0]
            if not self._send(frame, n_events):
                return
            self._outbox.popleft()
            self._last_beat = beat or self._last_beat
            self._outbox_bytes -= len(frame)
            self._sent += 1
            self._sent_bytes += len(frame)

    def _send(self, frame: bytes, n_events: int) -> bool:
        if self.links is not None:
            return self.links.send(frame, n_events)
        try:
            self.sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def _send_resync(self) -> bool:
        """A HELLO to the aggregator just moved to, numbered as the last message
        before its next one: "count no gap up to here", with the totals of the
        last heartbeat sent elsewhere: "count losses beyond these" (docs/protocol.md)."""
        next_seq = self._outbox[0][2] if self._outbox else self._seq
        hello = protocol.encode(Message(MsgKind.HELLO, self.hostname, self.instance,
                                        next_seq - 1, self.wall_offset_ns,
                                        {"pid": os.getpid(), "resync": True,
                                         "lost": self._last_beat.get("lost", {}),
                                         "stats": self._last_beat.get("stats", {})}))
        self._resync = not self._send(hello, 0)
        return not self._resync

    def take_moved(self) -> bool:
        """True once after each move to another aggregator."""
        moved, self._moved = self._moved, False
        return moved

    def unconfirmed_events(self) -> int:
        """Events possibly lost with an aggregator that went away (collector/links.py)."""
        return self.links.unconfirmed_events if self.links is not None else 0

    def statistics(self) -> PublisherStats:
        return PublisherStats(self._sent, self._sent_bytes, len(self._outbox),
                              self._outbox_bytes, self._dropped_messages,
                              self._dropped_events)

    def close(self) -> None:
        if self.links is not None:
            self.links.close()
        else:
            self.sock.close(0)
        if self._record_to is not None:
            self._record_to.close()


def push_socket(ctx: zmq.Context, curve: Optional[CurveClient], *,
                heartbeats: bool = False) -> zmq.Socket:
    """A PUSH socket with the options of the banner (and, for several
    aggregators, ZMTP heartbeats: collector/links.py)."""
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.SNDHWM, OUTBOX_ZMQ_HWM)
    if heartbeats:
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    if curve:
        sock.curve_publickey = curve.public
        sock.curve_secretkey = curve.secret
        sock.curve_serverkey = curve.server_public
    return sock


def default_hostname() -> str:
    return socket.gethostname()
