"""Stitch requests to responses on one connection and build Records (pure).

HTTP/1.1 answers requests in order, so a connection keeps a FIFO of requests
awaiting their final response.  Time comes in as arguments (wall-clock ns).

Invariants:
  * Every request whose head was seen becomes exactly one Record: complete when
    its final response was followed to its last byte; complete=False when the
    response was lost, cut short, superseded, or never came (after
    `timeout_ns` of silence on the connection, or at close) — never dropped.
  * S3 clients do not pipeline (boto3/urllib3, the AWS CLI, curl, Go, Java SDKs
    all wait for a response before reusing a connection).  So a new request
    head means every older request's exchange is over: one still waiting is
    emitted incomplete and the response stream starts afresh.  This is what
    keeps a lost response from being paired with the next request.
  * A response whose request was never seen (a mid-stream start) is dropped.
  * An incomplete record's latency is the last activity seen on the connection
    minus its start: a lower bound of what the client waited.
  * At most MAX_PENDING_PER_CONN requests wait per connection.
"""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass
from typing import Mapping, Optional

from s3slower.aggregator import redact, s3ops
from s3slower.aggregator.http1 import Chunk, End, Head, Lost, MessageStream
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
        self.last_end_ns = 0            # monotonic: the last call seen on either side
        self.overflow = 0               # requests pushed out by MAX_PENDING_PER_CONN
        self.superseded = 0             # requests a newer request showed were over
        self.unanswered = 0             # responses to requests never seen
        self._answering = False         # the response in progress has a request

    def _next_method(self) -> str:
        for p in self.pending:
            if p.response is None:
                return p.head.method
        return ""

    def feed(self, egress: bool, chunk: Chunk, tid: int) -> list[Record]:
        self.last_seen_wall_ns = chunk.end_ns + self.offset
        self.last_end_ns = max(self.last_end_ns, chunk.end_ns)
        out: list[Record] = []
        if egress:
            for ev in self.requests.feed(chunk):
                self._on_request(ev, tid, out)
        else:
            for ev in self.responses.feed(chunk):
                self._on_response(ev, out)
        return out

    def _on_request(self, ev, tid: int, out: list[Record]) -> None:
        if isinstance(ev, Head):
            # no pipelining: earlier exchanges are over, the next response is ours
            for rev in self.responses.reset():
                self._on_response(rev, out)
            self.superseded += len(self.pending)
            while self.pending:
                out.append(self._record(self.pending.popleft(), None))
            if len(self.pending) >= MAX_PENDING_PER_CONN:
                self.overflow += 1
                out.append(self._record(self.pending.popleft(), None))
            self.pending.append(_Pending(ev, tid, ev.start_ns + self.offset))
        elif isinstance(ev, End):
            p = self._last_sending()
            if p is not None:
                p.request_size = _request_body_size(p.head, ev)

    def _last_sending(self) -> Optional[_Pending]:
        p = self.pending[-1] if self.pending else None
        return p if p is not None and p.request_size < 0 else None

    def _on_response(self, ev, out: list[Record]) -> None:
        if not isinstance(ev, Head):
            self.requests.expect_start()    # the client's next request starts anew
        target = next((p for p in self.pending if p.response is None), None)
        if isinstance(ev, Head):
            if target is None:
                self.unanswered += 1
                self._answering = False
                return
            target.response = ev
            self._answering = True
            if (ev.status >= 200 and target is self._last_sending()
                    and "100-continue" in target.head.headers.get("expect", "").lower()
                    and self.requests.in_message and self.requests.body_bytes == 0):
                self.requests.skip_body()     # refused before the body: none follows
                target.request_size = 0
            return
        if isinstance(ev, Lost):
            if target is not None:          # its response started and was lost
                self.pending.remove(target)
                out.append(self._record(target, None))
            return
        if not self._answering:
            return      # the end of a response to a request we never saw
        self._answering = False
        if self.pending and self.pending[0].response is not None:
            out.append(self._record(self.pending.popleft(), ev))

    def expire(self, now_wall_ns: int, timeout_ns: int) -> list[Record]:
        """Requests on a connection silent for longer than timeout_ns are over."""
        out: list[Record] = []
        if self.pending and now_wall_ns - self.last_seen_wall_ns > timeout_ns:
            while self.pending:
                out.append(self._record(self.pending.popleft(), None))
        return out

    def close(self) -> list[Record]:
        out: list[Record] = []
        self.requests.close()
        for ev in self.responses.close():
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
        latency = (end.end_ns if end else self.last_end_ns) - start
        request_size = p.request_size
        if request_size < 0:            # still sending: what went out so far
            request_size = self.requests.body_bytes if p is self._last_sending() else 0
        error_code = ""
        if end and status >= 400:
            m = _ERROR_CODE.search(end.body_prefix)
            error_code = m.group(1).decode() if m else ""
        return Record(
            start_wall_ns=p.start_wall_ns, hostname=self.peer.hostname,
            pid=self.peer.pid, tid=p.tid, comm=self.peer.comm, method=h.method,
            operation=s3.operation, bucket=s3.bucket, key=s3.key, endpoint=host,
            path=redact.redact_target(h.target), status_code=status,
            error_code=error_code, request_size=request_size,
            response_size=end.body_bytes if end else self._response_so_far(p),
            ttfb_ns=max(ttfb, 0), latency_ns=max(latency, 0),
            tls=_tls_name(h.source), complete=bool(end and end.complete),
            labels=self.peer.labels)


    def _response_so_far(self, p: _Pending) -> int:
        """Body bytes of p's response seen so far, when it is the one in progress."""
        if p.response is not None and self.responses.in_message and self._answering:
            return self.responses.body_bytes
        return 0


def _tls_name(source: int) -> str:
    try:
        return Source(source).tls_name
    except ValueError:
        return "none"


def _request_body_size(head: Head, end: End) -> int:
    """Object bytes sent: for aws-chunked uploads the decoded length."""
    decoded = head.headers.get("x-amz-decoded-content-length")
    if decoded is not None and decoded.isdigit():
        return int(decoded)
    return end.body_bytes
