"""Stitch requests to responses on one connection and build Records (pure).

The HTTP parser (http1.Parser) turns each call's bytes into events; this
module only consumes them.  Time comes in as arguments (wall-clock ns).

Invariants:
  * Every request whose head was seen becomes exactly one Record: complete when
    its final response was followed to its last byte; complete=False when the
    response was lost, cut short, superseded, or never came (after
    `timeout_ns` of silence on the connection, or at close) — never dropped.
  * S3 clients do not pipeline (boto3/urllib3, the AWS CLI, curl, Go, Java SDKs
    all wait for a response before reusing a connection).  So at most one
    request waits for its response, and a new request head means the older
    exchange is over: a request still waiting is emitted incomplete (counted
    in `superseded`) and the parser starts the response stream afresh.  This is
    what keeps a lost response from being paired with the next request.
  * A response whose request was never seen (a mid-stream start) is dropped and
    counted in `unanswered`.
  * A record still outstanding when its connection closed (the CLOSE event,
    not an exit or an eviction) is marked `reset`.
  * An incomplete record's latency is the last activity seen on the connection
    minus its start: a lower bound of what the client waited; its response
    size is the body bytes seen so far, its request size 0 if it was still
    being sent.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

from s3slower.aggregator import multipart, redact, retries, s3ops
from s3slower.aggregator.containers import Container
from s3slower.aggregator.http1 import Call, End, Head, Lost, Parser, Progress
from s3slower.aggregator.records import Record
from s3slower.aggregator.regions import region_of
from s3slower.aggregator.useragent import client_of
from s3slower.common.events import Source

_NO_HEADERS: Mapping[str, str] = {}
_TLS_NAMES = {int(s): s.tls_name for s in Source}
_ERROR_CODE = re.compile(rb"<Code>([A-Za-z0-9.\-_]{1,64})</Code>")
# A 2xx answer may still be an error (CompleteMultipartUpload's, S3 docs)
_ERROR_ROOT = re.compile(rb"\s*(?:<\?xml[^>]{0,200}\?>\s*)?<Error>")


@dataclass(frozen=True)
class Peer:
    """Who is on the client side of a connection."""
    hostname: str
    pid: int
    comm: str
    labels: Mapping[str, str]
    address: str          # remote ip:port from connect(), "" if unseen
    container: Optional[Container] = None     # None: not in a container (or unknown)


@dataclass
class _Pending:
    head: Head
    tid: int
    start_wall_ns: int
    request_size: int = -1          # -1 while the body is still being sent
    request_end_ns: int = 0         # the return of the call with its last byte
    response: Optional[Head] = None


class Connection:
    def __init__(self, peer: Peer, wall_offset_ns: int,
                 path_style_hosts: frozenset[str] = frozenset()):
        self.peer = peer
        self.offset = wall_offset_ns
        self.path_style_hosts = path_style_hosts
        self.parser = Parser()
        self.pending: Optional[_Pending] = None   # the request awaiting its response's end
        self.last_seen_wall_ns = 0
        self.last_end_ns = 0            # monotonic: the last call seen on either side
        self.superseded = 0             # requests a newer request showed were over
        self.unanswered = 0             # responses to requests never seen
        self._answering = False         # the response in progress has a request
        self._received = 0              # body bytes of the response in progress so far
        self._reset = False             # closing: the connection closed (not an exit, ...)

    def feed(self, egress: bool, chunk: Call, tid: int) -> list[Record]:
        self.last_seen_wall_ns = chunk.end_ns + self.offset
        if chunk.end_ns > self.last_end_ns:
            self.last_end_ns = chunk.end_ns
        p = self.pending
        answering = "" if egress or p is None or p.response is not None else p.head.method
        out: list[Record] = []
        for ev in self.parser.feed(egress, chunk, answering):
            if ev.is_request:
                self._on_request(ev, tid, out)
            else:
                self._on_response(ev, out)
        return out

    def _on_request(self, ev, tid: int, out: list[Record]) -> None:
        kind = type(ev)
        if kind is Head:
            if self.pending is not None:        # no pipelining: that exchange is over
                self.superseded += 1
                out.append(self._done(None, self._ended_by("the next request")))
            self.pending = _Pending(ev, tid, ev.start_ns + self.offset)
            return
        p = self.pending
        if kind is End and p is not None and p.request_size < 0:
            p.request_size = _request_body_size(p.head, ev)
            p.request_end_ns = ev.end_ns

    def _on_response(self, ev, out: list[Record]) -> None:
        kind = type(ev)
        p = self.pending
        if kind is Head:
            if p is None or p.response is not None:
                self.unanswered += 1
                self._answering = False
            else:
                p.response = ev
                self._answering = True
            return
        if kind is Progress:
            self._received = ev.body_bytes
            return
        self._received = 0
        if kind is Lost:
            if p is not None and p.response is None:    # its response started and was lost
                out.append(self._done(None, "its response's head was not captured whole"))
            return
        if not self._answering:
            return      # the end of a response to a request we never saw
        self._answering = False
        if p is not None and p.response is not None:
            out.append(self._done(ev))

    def _done(self, end: Optional[End], why: str = "") -> Record:
        """The waiting request's exchange is over (end: its response's End;
        why: what ended it otherwise)."""
        p, self.pending = self.pending, None
        assert p is not None        # callers end a pending request only
        return self._record(p, end, why)

    def expire(self, now_wall_ns: int, timeout_ns: int) -> list[Record]:
        """A request on a connection silent for longer than timeout_ns is over."""
        if self.pending is not None and now_wall_ns - self.last_seen_wall_ns > timeout_ns:
            return [self._done(None, self._ended_by(f"{timeout_ns / 1e9:g} s of silence"))]
        return []

    def close(self, why: str = "the connection's close", reset: bool = False) -> list[Record]:
        """reset: the connection itself closed, so what it left outstanding was cut
        off (Record.reset); not an exit or an eviction."""
        self._reset = reset
        out: list[Record] = []
        for ev in self.parser.close():
            if not ev.is_request:   # a request cut short is recorded as still sending
                self._on_response(ev, out)
        if self.pending is not None:
            out.append(self._done(None, self._ended_by(why)))
        return out

    def _ended_by(self, what: str) -> str:
        """Why the waiting request is incomplete, in words (--debug)."""
        seen = self.pending is not None and self.pending.response is not None
        return f"{what} came {'during its response' if seen else 'before any response'}"

    def _record(self, p: _Pending, end: Optional[End], why: str) -> Record:
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
        if request_size < 0:    # still sending: 0 (aws-chunked raw bytes are not object bytes)
            request_size = 0
        if end is not None:
            response_size = end.body_bytes
        elif resp is not None and self._answering:  # its response is the one in progress
            response_size = self._received
        else:
            response_size = 0
        complete = bool(end and end.complete)
        if complete:
            why = ""
        elif end is not None:
            why = "its response was cut short: bytes of it were not captured"
        error_code = ""
        if end and (status >= 400 or _ERROR_ROOT.match(end.body_prefix)):
            m = _ERROR_CODE.search(end.body_prefix)
            error_code = m.group(1).decode() if m else ""
        upload_id, part = multipart.upload_id(s3.operation, h.target,
                                              end.body_prefix if end else b"")
        hh = h.headers
        client, client_version = client_of(hh.get("user-agent", ""),
                                           hh.get("x-amz-user-agent", ""))
        rh = resp.headers if resp else _NO_HEADERS
        peer = self.peer
        # positional, in Record's field order: by keyword its 32 fields cost ~1 µs more
        return Record(
            p.start_wall_ns, peer.hostname, peer.pid, p.tid, peer.comm, h.method,
            s3.operation, s3.bucket, s3.key,
            host,                                               # endpoint
            redact.redact_target(h.target),                     # path
            status, error_code, request_size, response_size,
            max(ttfb, 0), max(latency, 0),                      # ttfb_ns, latency_ns
            _TLS_NAMES.get(h.source, "none"), complete,         # tls
            peer.labels, peer.container,
            why,                                                # why_incomplete
            upload_id, part, client, client_version,            # part: part_number
            rh.get("x-amzn-requestid") or rh.get("x-amz-request-id", ""),   # request_id
            rh.get("x-amz-id-2", ""),                           # extended_request_id
            region_of(rh.get("x-amz-bucket-region", ""), host),
            max(p.request_end_ns - start, 0) if p.request_end_ns else 0,    # send_ns
            retries.attempt_of(hh.get("amz-sdk-request", "")),  # attempt
            self._reset and not complete)                       # reset


def _request_body_size(head: Head, end: End) -> int:
    """Object bytes sent: for aws-chunked uploads the decoded length."""
    decoded = head.headers.get("x-amz-decoded-content-length")
    if decoded is not None and decoded.isdigit():
        return int(decoded)
    return end.body_bytes
