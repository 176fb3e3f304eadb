"""Stitch requests to responses on one connection and build Records (pure).

HTTP/1.1 answers requests in order, so a connection keeps a FIFO of requests
awaiting their final response.  A request whose response never completes is
emitted after `request_timeout_ns` (or at close) with complete=False — never
silently dropped.  Time comes in as arguments (wall-clock ns).
"""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from s3slower.aggregator import redact, s3ops
from s3slower.aggregator.http1 import Chunk, End, Head, MessageStream
from s3slower.aggregator.records import Record
from s3slower.common.events import Source

MAX_PENDING_PER_CONN = 64     # pipelined requests awaiting responses
_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9.\-_]{1,64})</Code>")


@dataclass(frozen=True)
class Peer:
    """Who is on the client side of a connection."""
    hostname: str
    pid: int
    comm: str
    labels: Mapping[str, str]
    address: str          # remote ip:port from connect(), "" if unseen


@dataclass
class _Pending:
    head: Head
    tid: int
    start_wall_ns: int
    request_size: int = -1          # -1 while the body is still being sent
    response: Optional[Head] = None


class Connection:
    def __init__(self, peer: Peer, wall_offset_ns: int,
                 path_style_hosts: frozenset[str] = frozenset()):
        self.peer = peer
        self.offset = wall_offset_ns
        self.path_style_hosts = path_style_hosts
        self.pending: collections.deque[_Pending] = collections.deque()
        self.requests = MessageStream(True)
        self.responses = MessageStream(False, self._next_method)
        self.last_seen_wall_ns = 0
        self.overflow = 0

    def _next_method(self) -> str:
        for p in self.pending:
            if p.response is None:
                return p.head.method
        return ""

    def feed(self, egress: bool, chunk: Chunk, tid: int) -> list[Record]:
        self.last_seen_wall_ns = chunk.end_ns + self.offset
        if egress:
            for ev in self.requests.feed(chunk):
                self._on_request(ev, tid)
            return []
        out: list[Record] = []
        for ev in self.responses.feed(chunk):
            self._on_response(ev, out)
        return out

    def _on_request(self, ev, tid: int) -> None:
        if isinstance(ev, Head):
            if len(self.pending) >= MAX_PENDING_PER_CONN:
                self.pending.popleft()
                self.overflow += 1
            self.pending.append(_Pending(ev, tid, ev.start_ns + self.offset))
        elif self.pending:
            p = self._last_sending()
            if p is not None:
                p.request_size = _request_body_size(p.head, ev)

    def _last_sending(self) -> Optional[_Pending]:
        for p in reversed(self.pending):
            if p.request_size < 0:
                return p
        return None

    def _on_response(self, ev, out: list[Record]) -> None:
        target = next((p for p in self.pending if p.response is None), None)
        if isinstance(ev, Head):
            if target is not None:
                target.response = ev
            return
        if not self.pending or self.pending[0].response is None:
            return      # a response to a request we never saw (mid-stream start)
        p = self.pending.popleft()
        out.append(self._record(p, ev))

    def expire(self, now_wall_ns: int, timeout_ns: int) -> list[Record]:
        out = []
        while self.pending and now_wall_ns - self.pending[0].start_wall_ns > timeout_ns:
            out.append(self._record(self.pending.popleft(), None))
        return out

    def close(self) -> list[Record]:
        out: list[Record] = []
        self.requests.close()
        for ev in self.responses.close():
            if isinstance(ev, End):
                self._on_response(ev, out)
        while self.pending:
            out.append(self._record(self.pending.popleft(), None))
        return out

    def _record(self, p: _Pending, end: Optional[End]) -> Record:
        h = p.head
        host = h.headers.get("host", "") or self.peer.address
        s3 = s3ops.classify(h.method, h.target, h.headers,
                            path_style_hosts=self.path_style_hosts)
        resp = p.response
        status = resp.status if resp else 0
        start = h.start_ns
        ttfb = resp.first_byte_end_ns - start if resp else 0
        latency = end.end_ns - start if end else 0
        error_code = ""
        if end and status >= 400:
            m = _ERROR_CODE.search(end.body_prefix)
            error_code = m.group(1).decode() if m else ""
        return Record(
            start_wall_ns=p.start_wall_ns, hostname=self.peer.hostname,
            pid=self.peer.pid, tid=p.tid, comm=self.peer.comm, method=h.method,
            operation=s3.operation, bucket=s3.bucket, key=s3.key, endpoint=host,
            path=redact.redact_target(h.target), status_code=status,
            error_code=error_code, request_size=max(p.request_size, 0),
            response_size=end.body_bytes if end else 0,
            ttfb_ns=max(ttfb, 0), latency_ns=max(latency, 0),
            tls=Source(h.source).tls_name, complete=bool(end and end.complete),
            labels=self.peer.labels)


def _request_body_size(head: Head, end: End) -> int:
    """Object bytes sent: for aws-chunked uploads the decoded length."""
    decoded = head.headers.get("x-amz-decoded-content-length")
    if decoded is not None and decoded.isdigit():
        return int(decoded)
    return end.body_bytes
