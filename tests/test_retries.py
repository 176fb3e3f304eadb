"""Retries and throttling (aggregator/retries.py): failure reasons, the retry
tracker's header path and heuristic (windows, overlaps, eviction, expiry) on
records with fake times; the pipeline's `reset` and `retry` from kernel
events; and their metrics (aggregator/retries_out.py)."""
from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from test_terminal import rec

from s3slower.aggregator import retries
from s3slower.aggregator.metrics import Metrics
from s3slower.aggregator.pipeline import Pipeline
from s3slower.aggregator.records import to_json
from s3slower.aggregator.retries import (RetryTracker, attempt_of, failure_reason,
                                         is_throttle)
from s3slower.aggregator.retries_out import RetryMetrics
from s3slower.common.events import Direction, Event, Kind, encode_event
from s3slower.common.protocol import Message, MsgKind

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S


def at(s: float, ms: int = 10, **kw):
    """A record starting s seconds after T0, taking ms."""
    return rec(start_wall_ns=T0 + int(s * S), latency_ns=ms * MS, **kw)


def fail(s: float, **kw):
    return at(s, status_code=503, error_code="SlowDown", **kw)


def retries_of(tracker: RetryTracker, *records) -> list[int]:
    for r in records:
        tracker.feed(r)
    return [r.retry for r in records]


# -- reasons ------------------------------------------------------------------------------

@pytest.mark.parametrize("status, code, complete, reset, reason", [
    (503, "SlowDown", True, False, "slow_down"),
    (503, "", True, False, "slow_down"),                # a HEAD's 503: no body
    (200, "SlowDown", True, False, "slow_down"),
    (429, "", True, False, "too_many_requests"),
    (429, "TooManyRequests", True, False, "too_many_requests"),
    (500, "InternalError", True, False, "internal_error"),
    (500, "", True, False, "internal_error"),
    (400, "RequestTimeout", True, False, "request_timeout"),
    (0, "", False, True, "connection_reset"),
    (200, "", False, True, "connection_reset"),         # its response cut off
    (0, "", False, False, ""),                          # incomplete some other way
    (503, "ServiceUnavailable", True, False, ""),
    (500, "NotImplemented", True, False, ""),
    (404, "NoSuchKey", True, False, ""),
    (200, "", True, False, ""),
])
def test_failure_reasons(status, code, complete, reset, reason):
    r = rec(status_code=status, error_code=code, complete=complete, reset=reset)
    assert failure_reason(r) == reason
    assert is_throttle(r) == (reason in ("slow_down", "too_many_requests"))


@pytest.mark.parametrize("header, n", [
    ("attempt=1; max=5", 1), ("attempt=3; max=5", 3), ("ttl=20260101T000000Z; attempt=2; max=3", 2),
    ("attempt=2", 2), ("", 0), ("max=5", 0), ("attempt=; max=5", 0), ("attempt=x", 0),
    ("reattempt=4", 0), ("attempt=123456", 0)])
def test_attempt_header(header, n):
    assert attempt_of(header) == n


# -- the header path -------------------------------------------------------------------------

def test_the_header_says_the_attempt_and_leaves_no_state():
    t = RetryTracker()
    assert retries_of(t, fail(0, attempt=1), fail(1, attempt=2), at(3, attempt=3),
                      at(100, attempt=1)) == [0, 1, 2, 0]
    assert len(t) == 0


def test_the_header_wins_over_the_heuristic():
    """attempt=1 after a failure of the same request is a new call, not a retry."""
    t = RetryTracker()
    assert retries_of(t, fail(0, attempt=1), at(1, attempt=1)) == [0, 0]


# -- the heuristic ---------------------------------------------------------------------------

def test_a_repeat_within_the_window_after_a_failure_is_a_retry():
    t = RetryTracker()
    got = retries_of(t, fail(0), fail(1), at(3, status_code=500), at(4), at(5))
    assert got == [0, 1, 2, 3, 0]      # the success ends the chain: the next is a first
    assert len(t) == 0


def test_the_window_is_from_the_failure_s_end():
    t = RetryTracker()
    # ends at 0.010 s; a start 5 s after that end is in, a start beyond is out
    assert retries_of(t, fail(0), at(5.010)) == [0, 1]
    assert retries_of(t, fail(10), at(15.011)) == [0, 0]
    assert len(t) == 0


def test_failures_a_client_retries():
    t = RetryTracker()
    for first in (at(0, status_code=502), at(0, complete=False),
                  at(0, complete=False, reset=True), at(0, status_code=429),
                  at(0, status_code=400, error_code="RequestTimeout")):
        assert retries_of(t, first, at(1)) == [0, 1], first
    assert retries_of(t, at(0, status_code=404, error_code="NoSuchKey"), at(1)) == [0, 0]
    assert retries_of(t, at(0, status_code=403), at(1)) == [0, 0]


def test_only_the_same_process_method_operation_bucket_and_key():
    t = RetryTracker()
    others = [at(1, pid=1), at(1, hostname="h2"), at(1, method="HEAD"),
              at(1, operation="HeadObject"), at(1, bucket="b2"), at(1, key="other")]
    assert retries_of(t, fail(0), *others) == [0] * 7
    assert retries_of(t, at(1)) == [1]     # none of them took the failure's place


def test_a_request_overlapping_the_failure_is_not_its_retry():
    """Two threads GET the same key at once; one fails: the other, which
    started before the failure ended, is no retry, and the real retry still is."""
    t = RetryTracker()
    assert retries_of(t, fail(0, ms=1000), at(0.5, ms=1000), at(2)) == [0, 0, 1]


def test_the_chain_of_one_request_counts_on_across_reasons():
    t = RetryTracker()
    got = retries_of(t, at(0, complete=False, reset=True), fail(1),
                     at(2, status_code=500, error_code="InternalError"), at(3))
    assert got == [0, 1, 2, 3]


def test_over_the_bound_the_least_recent_failure_is_forgotten_and_counted():
    t = RetryTracker(max_failed=2)
    retries_of(t, fail(0, key="a"), fail(0.1, key="b"), fail(0.2, key="c"))
    assert (t.evicted, len(t)) == (1, 2)
    assert retries_of(t, at(1, key="a"), at(1, key="b"), at(1, key="c")) == [0, 1, 1]
    assert len(t) == 0


def test_a_failure_refreshed_moves_to_the_most_recent_end():
    t = RetryTracker(max_failed=2)
    retries_of(t, fail(0, key="a"), fail(0.1, key="b"), fail(1, key="a"), fail(1.1, key="c"))
    assert t.evicted == 1                           # b, not a: a failed again since
    assert retries_of(t, at(2, key="a"), at(2, key="b")) == [2, 0]


def test_expire_forgets_what_no_retry_can_match_any_more_uncounted():
    t = RetryTracker()
    retries_of(t, fail(0, key="old"), fail(600, key="new"))
    t.expire(T0 + (retries.WINDOW_NS + retries.KEEP_NS) + 1 * S)
    assert (len(t), t.evicted) == (1, 0)
    assert retries_of(t, at(601, key="new")) == [1]


# -- through the pipeline --------------------------------------------------------------------

def _data(conn: int, egress: bool, payload: bytes, at_us: int) -> Event:
    ns = at_us * 1000
    return Event(ns, ns + 10, conn, 4242, 4242, 5, len(payload), Kind.DATA,
                 Direction.EGRESS if egress else Direction.INGRESS, 0, "client", payload, b"")


def _put(attempt: int) -> bytes:
    return (b"PUT /b/k HTTP/1.1\r\nHost: s3.local\r\namz-sdk-invocation-id: 1f\r\n"
            b"amz-sdk-request: attempt=%d; max=5\r\nContent-Length: 2\r\n\r\nhi" % attempt)


_XML = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code></Error>'
SLOWDOWN = (b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
            b"Content-Length: %d\r\n\r\n" % len(_XML) + _XML)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def _feed(p: Pipeline, *evs) -> list:
    msg = Message(MsgKind.EVENTS, "h1", 1, 0, 0, {"events": [encode_event(e) for e in evs]})
    return p.handle(msg, 0)


def _close(conn: int, kind: Kind = Kind.CLOSE) -> Event:
    return Event(1, 2, conn, 4242, 4242, 5, 0, kind, 0, 0, "client", b"", b"")


def test_pipeline_a_close_with_a_request_outstanding_is_a_reset_and_the_header_its_retry():
    p = Pipeline()
    out = _feed(p, _data(1, True, _put(1), 1000), _data(1, False, SLOWDOWN, 2000),
                _data(1, True, _put(2), 3000), _close(1),          # reset: no answer
                _data(2, True, _put(3), 9000), _data(2, False, OK, 9500))
    assert [(r.status_code, r.complete, r.reset, r.retry, failure_reason(r)) for r in out] == [
        (503, True, False, 0, "slow_down"), (0, False, True, 1, "connection_reset"),
        (200, True, False, 2, "")]
    assert json.loads(to_json(out[2]))["retry"] == 2


def test_pipeline_an_exit_or_a_timeout_is_no_reset():
    p = Pipeline()
    out = _feed(p, _data(1, True, _put(1), 1000), _close(1, Kind.EXIT))
    assert [(r.complete, r.reset, failure_reason(r)) for r in out] == [(False, False, "")]
    out = _feed(p, _data(2, True, _put(1), 1000))
    out += p.tick(10**15)
    assert [(r.complete, r.reset, failure_reason(r)) for r in out] == [(False, False, "")]


def test_pipeline_a_header_less_client_by_the_heuristic():
    get = b"GET /b/k HTTP/1.1\r\nHost: s3.local\r\n\r\n"
    p = Pipeline()
    out = _feed(p, _data(1, True, get, 1000), _data(1, False, SLOWDOWN, 2000),
                _data(1, True, get, 500_000), _data(1, False, OK, 501_000))
    assert [r.retry for r in out] == [0, 1]


# -- metrics ---------------------------------------------------------------------------------

def test_metrics_count_retries_and_failures_by_reason_with_the_request_labels():
    reg = CollectorRegistry()
    metrics = Metrics(reg, extra_label_keys=("team",))
    sink = RetryMetrics(reg, metrics)
    labels = {"hostname": "h1", "comm": "aws", "s3_operation": "GetObject", "bucket": "bucket",
              "endpoint": "s3.local:9000", "team": "x"}
    t = RetryTracker()
    for r in (fail(0, labels={"team": "x"}), fail(1, labels={"team": "x"}),
              at(2, status_code=500, labels={"team": "x"}), at(3, labels={"team": "x"}),
              at(9, labels={"team": "x"}, complete=False, reset=True)):
        t.feed(r)
        metrics.observe(r)
        sink.emit(r)
    sink.tick(None, T0)
    assert reg.get_sample_value("s3slower_retries_total", labels) == 3
    for reason, n in (("slow_down", 2), ("internal_error", 1), ("connection_reset", 1)):
        assert reg.get_sample_value("s3slower_request_failures_total",
                                    dict(labels, reason=reason)) == n
    assert reg.get_sample_value("s3slower_request_failures_total",
                                dict(labels, reason="request_timeout")) is None
    # not seen for the series TTL: removed, as the request series are
    sink.tick(None, T0 + int(metrics.series_ttl_s * S) + S)
    assert reg.get_sample_value("s3slower_retries_total", labels) is None
    assert reg.get_sample_value("s3slower_request_failures_total",
                                dict(labels, reason="slow_down")) is None


def test_metrics_labels_are_capped_as_the_request_series():
    reg = CollectorRegistry()
    metrics = Metrics(reg, max_buckets=2)
    sink = RetryMetrics(reg, metrics)
    for b in ("b1", "b2", "b3"):
        r = fail(0, bucket=b)
        metrics.observe(r)
        sink.emit(r)
    buckets = {s.labels["bucket"] for m in reg.collect()
               if m.name == "s3slower_request_failures" for s in m.samples}
    assert buckets == {"b1", "__other__"}
