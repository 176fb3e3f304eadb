"""ZAP authentication of collectors by CurveZMQ public key (RFC 27/ZAP).

The aggregator answers ZAP requests itself on inproc://zeromq.zap.01, in its
own loop (no thread): a collector whose long-term public key is in the
allowed set is accepted, any other is refused, logged once per key and
counted.  Keys are pyzmq certificate files (`s3slower keygen`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import zmq
from zmq.utils import z85

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
log = logging.getLogger("s3slower.auth")


@dataclass(frozen=True)
class AuthStats:
    accepted: int
    refused: int


class KeyAuthenticator:
    def __init__(self, ctx: zmq.Context, allowed: frozenset[bytes]):
        self.allowed = allowed
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)
        self._accepted = 0
        self._refused = 0
        self._logged: set[bytes] = set()

    def handle(self) -> None:
        """Answer every pending ZAP request."""
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.sock.send_multipart(self._answer(frames))

    def _answer(self, frames: list[bytes]) -> list[bytes]:
        if len(frames) < 6:
            self._refused += 1
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism = frames[:6]
        key = frames[6] if len(frames) > 6 else b""
        if mechanism == b"CURVE" and key in self.allowed:
            self._accepted += 1
            return [version, request_id, b"200", b"OK", z85.encode(key), b""]
        self._refused += 1
        if key not in self._logged and len(self._logged) < 1024:
            self._logged.add(key)
            who = z85.encode(key).decode() if len(key) == 32 else mechanism.decode("latin-1")
            log.warning("refused collector %s from %s: key not allowed", who,
                        address.decode("latin-1"))
        return [version, request_id, b"400", b"key not allowed", b"", b""]

    def statistics(self) -> AuthStats:
        return AuthStats(self._accepted, self._refused)

    def close(self) -> None:
        self.sock.close(0)
