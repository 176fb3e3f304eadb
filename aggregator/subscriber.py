"""Receive collector messages over ZeroMQ (the aggregator's only network input).

Socket semantics: PULL fair-queues many collectors' PUSH sockets.
RCVHWM bounds what ZeroMQ buffers on our side; beyond it back-pressure
reaches the collectors, whose outboxes are bounded and counted.  MAXMSGSIZE
makes ZeroMQ drop (and disconnect) a peer sending absurd frames before they
are ever allocated here; LINGER=0 so exit never waits.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import zmq

from s3slower.aggregator.auth import KeyAuthenticator
from s3slower.common.protocol import MAX_MESSAGE_BYTES

RCVHWM = 1_000
# Frames up to this size reach the decoder, which rejects (and counts) any
# over MAX_MESSAGE_BYTES; larger ones ZeroMQ drops with the connection.
MAX_TRANSPORT_BYTES = 4 * MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class CurveServer:
    public: bytes                 # z85
    secret: bytes                 # z85
    allowed: frozenset[bytes]     # raw 32-byte public keys of allowed collectors


class Subscriber:
    def __init__(self, ctx: zmq.Context, endpoints: list[str], *, bind: bool,
                 curve: Optional[CurveServer] = None):
        self.ctx = ctx
        # the ZAP handler must be bound before any CURVE handshake can start
        self.auth = KeyAuthenticator(ctx, curve.allowed) if curve else None
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, RCVHWM)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_TRANSPORT_BYTES)
        if curve:
            self.sock.curve_server = True
            self.sock.curve_publickey = curve.public
            self.sock.curve_secretkey = curve.secret
        for ep in endpoints:
            if bind:
                self.sock.bind(ep)
            else:
                self.sock.connect(ep)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        if self.auth:
            self.poller.register(self.auth.sock, zmq.POLLIN)

    def receive(self, timeout_ms: int, max_frames: int = 256) -> list[zmq.Frame]:
        """Frames that arrived within timeout_ms (at most max_frames), as ZeroMQ
        holds them: the decoder reads them in place (no copy of a batch)."""
        ready = dict(self.poller.poll(timeout_ms))
        if self.auth and self.auth.sock in ready:
            self.auth.handle()
        if self.sock not in ready:
            return []
        frames = []
        while len(frames) < max_frames:
            try:
                frames.append(self.sock.recv(zmq.NOBLOCK, copy=False))
            except zmq.Again:
                break
        return frames

    def refused(self) -> int:
        return self.auth.statistics().refused if self.auth else 0

    def close(self) -> None:
        self.sock.close(0)
        if self.auth:
            self.auth.close()


def endpoint_path(endpoint: str) -> Optional[str]:
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


def wait_for_ipc(endpoint: str) -> bool:
    path = endpoint_path(endpoint)
    return path is None or os.path.exists(path)
