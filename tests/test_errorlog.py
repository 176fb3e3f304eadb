"""Every counted error is told under --debug: its connection and why, rate-limited."""
from __future__ import annotations

import logging

import pytest

from s3slower.aggregator import errorlog
from s3slower.aggregator.pipeline import Pipeline
from s3slower.common.events import Direction, Event, Kind, encode_event
from s3slower.common.protocol import Message, MsgKind
from s3slower.reasons import FIRST_PER_SOURCE, ReasonLimiter

S = 1_000_000_000
GET = b"GET /bkt/obj HTTP/1.1\r\nHost: s3.test\r\n\r\n"
NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nContent-Length: 37\r\n\r\n"
             b"<Error><Code>NoSuchKey</Code></Error>")


def _data(conn_id: int, egress: bool, data: bytes, t: int, pid: int = 7) -> Event:
    return Event(t, t + 1000, conn_id, pid, pid, 3, len(data), Kind.DATA,
                 Direction.EGRESS if egress else Direction.INGRESS, 0, "curl", data, b"")


def _kind(kind: Kind, conn_id: int, t: int, pid: int = 7) -> Event:
    return Event(t, t, conn_id, pid, pid, 3 if kind == Kind.CLOSE else -1, 0, kind, 0, 0,
                 "curl", b"", b"")


class Feed:
    def __init__(self):
        self.pipeline, self.seq = Pipeline(), 0

    def __call__(self, events: list[Event], now: int) -> list:
        self.seq += 1
        msg = Message(MsgKind.EVENTS, "host1", 1, self.seq, 0,
                      {"events": [encode_event(e) for e in events]})
        return self.pipeline.handle(msg, now)


@pytest.fixture
def told(caplog, monkeypatch):
    monkeypatch.setattr(errorlog, "_limiter", ReasonLimiter())     # a fresh rate limit
    caplog.set_level(logging.DEBUG, logger="s3slower.errors")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "s3slower.errors"]


def test_each_counted_error_is_told_with_its_connection_and_reason(told):
    feed = Feed()
    recs = feed([_data(0xA1, True, GET, 10), _data(0xA1, False, NOT_FOUND, 20),   # a 404
                 _data(0xB2, True, GET, 30), _kind(Kind.CLOSE, 0xB2, 40),         # closed
                 _data(0xC3, True, GET, 50), _data(0xC3, True, GET, 60),         # superseded
                 _data(0xD4, True, GET, 70, pid=8), _kind(Kind.EXIT, 0, 80, pid=8)], S)
    assert feed.pipeline.statistics().errors == 4 == len(recs)
    lines = told()
    assert lines == [
        "errors +1: host1 pid 7 (curl) conn 0xa1 to s3.test: GetObject GET /bkt/obj "
        "-> status 404 NoSuchKey",
        "errors +1: host1 pid 7 (curl) conn 0xb2 to s3.test: GetObject GET /bkt/obj "
        "-> status 0, incomplete: the connection's close came before any response",
        "errors +1: host1 pid 7 (curl) conn 0xc3 to s3.test: GetObject GET /bkt/obj "
        "-> status 0, incomplete: the next request came before any response",
        "errors +1: host1 pid 8 (curl) conn 0xd4 to s3.test: GetObject GET /bkt/obj "
        "-> status 0, incomplete: the process's exit came before any response"], lines


def test_a_storm_of_errors_is_told_as_the_ledger_reasons_are(told):
    feed = Feed()
    n = FIRST_PER_SOURCE + 5
    feed([e for i in range(n) for e in (_data(i + 1, True, GET, 10 * i),
                                        _kind(Kind.CLOSE, i + 1, 10 * i + 5))], S)
    assert feed.pipeline.statistics().errors == n
    # the first ones, then one per EVERY_S (the rest are counted, said with the next)
    assert len(told()) == FIRST_PER_SOURCE + 1, told()


def test_nothing_is_told_without_debug(caplog):
    caplog.set_level(logging.INFO, logger="s3slower.errors")
    feed = Feed()
    feed([_data(1, True, GET, 10), _kind(Kind.CLOSE, 1, 20)], S)
    assert feed.pipeline.statistics().errors == 1
    assert not [r for r in caplog.records if r.name == "s3slower.errors"]
