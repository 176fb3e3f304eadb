"""Retries and throttling: why a request failed, and which requests retry one (pure).

`failure_reason(rec)` names the failures an S3 client retries, one of REASONS
("" for any other record):
  * slow_down          `<Code>SlowDown</Code>` (S3's 503), or a 503 whose body
                       was not seen (a HEAD's answer has none);
  * too_many_requests  429 (S3-compatible stores throttle with it);
  * internal_error     `<Code>InternalError</Code>`, or a 500 without a code;
  * request_timeout    `<Code>RequestTimeout</Code>` (S3's 400: the body came
                       too slowly);
  * connection_reset   incomplete: its connection was closed with it
                       outstanding (`Record.reset`: a reset or close by the
                       server, or a client that gave up and closed).
The first two are throttles (`is_throttle`).

`RetryTracker.feed(rec)` sets `rec.retry`, the attempt's number less one (0:
a first attempt), on each finished Record, in the order they finish:
  * exactly from the request's `amz-sdk-request: attempt=N` header when it
    has one (botocore and most AWS SDKs send it on every attempt;
    `Record.attempt`); such records leave no state behind;
  * else by the heuristic: the same process (hostname, pid) repeating the
    same method, operation, bucket and key, starting at most WINDOW_NS after
    a failed attempt ended, is its retry (failed: a failure reason, any 5xx,
    or incomplete).  A retry that finishes before the attempt it repeats
    (its record came out late) is taken as a first attempt.
Bounds: at most MAX_FAILED failed attempts wait for their retry; over it
the least recent is forgotten and counted (`evicted`: the ledger's
retry_evicted; its retry is then taken as a first attempt).  `expire(now)`
forgets the ones whose window ended more than KEEP_NS ago (not a loss: a
retry finishing that late is not expected).
"""
from __future__ import annotations

import collections
import re
from typing import NamedTuple

from s3slower.aggregator.records import Record

SLOW_DOWN, TOO_MANY_REQUESTS = "slow_down", "too_many_requests"
INTERNAL_ERROR, REQUEST_TIMEOUT, CONNECTION_RESET = (
    "internal_error", "request_timeout", "connection_reset")
REASONS = (SLOW_DOWN, TOO_MANY_REQUESTS, INTERNAL_ERROR, REQUEST_TIMEOUT, CONNECTION_RESET)
THROTTLES = frozenset({SLOW_DOWN, TOO_MANY_REQUESTS})
WINDOW_NS = 5 * 10**9           # the 5 s: botocore's first backoffs are <= 2 s
# A retry's record comes out when it finishes: a slow GET may take minutes.
KEEP_NS = 10 * 60 * 10**9
# Failed attempts of header-less clients waiting for their retry: a host
# throttled hard does a few thousand a second; 5 s of them fit.
MAX_FAILED = 10_000
_ATTEMPT = re.compile(r"(?:^|[;,\s])attempt=([0-9]{1,4})(?:$|[;,\s])")
_BY_CODE = {"SlowDown": SLOW_DOWN, "InternalError": INTERNAL_ERROR,
            "RequestTimeout": REQUEST_TIMEOUT}
_BY_STATUS = {503: SLOW_DOWN, 500: INTERNAL_ERROR}


def attempt_of(header: str) -> int:
    """N of `amz-sdk-request: attempt=N; max=M` (1: a first attempt); 0 when absent."""
    m = _ATTEMPT.search(header) if header else None
    return int(m.group(1)) if m else 0


def failure_reason(rec: Record) -> str:
    if rec.status_code == 429:
        return TOO_MANY_REQUESTS
    by_code = _BY_CODE.get(rec.error_code)
    if by_code is not None:
        return by_code
    if not rec.error_code and rec.status_code in _BY_STATUS:
        return _BY_STATUS[rec.status_code]
    return CONNECTION_RESET if rec.reset and not rec.complete else ""


def is_throttle(rec: Record) -> bool:
    return failure_reason(rec) in THROTTLES


def failed(rec: Record) -> bool:
    """An attempt a client retries: a failure reason, any 5xx, or no complete answer."""
    return not rec.complete or rec.status_code >= 500 or bool(failure_reason(rec))


class _Failed(NamedTuple):
    end_wall_ns: int
    retry: int


class RetryTracker:
    def __init__(self, window_ns: int = WINDOW_NS, max_failed: int = MAX_FAILED):
        self.window_ns = window_ns
        self.max_failed = max_failed
        self.evicted = 0
        self._failed: collections.OrderedDict[tuple, _Failed] = collections.OrderedDict()

    def feed(self, rec: Record) -> None:
        if rec.attempt > 0:
            rec.retry = rec.attempt - 1
            return
        key = (rec.hostname, rec.pid, rec.method, rec.operation, rec.bucket, rec.key)
        start = rec.start_wall_ns
        rec.retry = 0
        prev = self._failed.get(key)
        if prev is not None and start >= prev.end_wall_ns:     # else: it overlapped, not a retry
            del self._failed[key]
            if start - prev.end_wall_ns <= self.window_ns:
                rec.retry = prev.retry + 1
        if failed(rec):
            self._failed[key] = _Failed(start + rec.latency_ns, rec.retry)
            self._failed.move_to_end(key)
            if len(self._failed) > self.max_failed:
                self._failed.popitem(last=False)
                self.evicted += 1

    def expire(self, now_wall_ns: int) -> None:
        horizon = now_wall_ns - self.window_ns - KEEP_NS
        old = [k for k, f in self._failed.items() if f.end_wall_ns < horizon]
        for k in old:
            del self._failed[k]

    def __len__(self) -> int:
        return len(self._failed)
