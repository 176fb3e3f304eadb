"""The metrics of retries and retryable failures (aggregator/retries.py).

* `s3slower_retries_total{...}`: request records that were a retry
  (`retry` >= 1): their sum over a client's calls is botocore's
  `RetryAttempts`;
* `s3slower_request_failures_total{...,reason}`: the records with a failure
  reason (slow_down, too_many_requests, internal_error, request_timeout,
  connection_reset); throttles are `reason=~"slow_down|too_many_requests"`.

Their labels are the request series' (aggregator/metrics.py), capped by the
same caps (`Metrics.label_set`), plus `reason` (five values).  A series is
made at a label set's first retry or failure, and removed when neither came
for the series TTL, as the request series are; both are ticked together.
"""
from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter

from s3slower.aggregator.metrics import Metrics
from s3slower.aggregator.records import Record
from s3slower.aggregator.retries import failure_reason


class RetryMetrics:
    """A sink: `emit` per record, `tick` per second (expiry)."""

    def __init__(self, registry: CollectorRegistry, metrics: Metrics):
        self.metrics = metrics
        names = metrics.label_names
        self.retries = Counter("s3slower_retries_total",
                               "Requests that retried a failed attempt", names,
                               registry=registry)
        self.failures = Counter("s3slower_request_failures_total",
                                "Requests that failed as clients retry (throttled, "
                                "5xx, timed out, reset), by reason", names + ("reason",),
                                registry=registry)
        # (counter, its labels) -> last seen (s); NaN until the next tick stamps it
        self._seen: dict[tuple[Counter, tuple[str, ...]], float] = {}
        self._touched: set[tuple[Counter, tuple[str, ...]]] = set()

    def emit(self, rec: Record) -> None:
        reason = failure_reason(rec)
        if not rec.retry and not reason:
            return
        ls = self.metrics.label_set(rec)
        if rec.retry:
            self._inc(self.retries, ls)
        if reason:
            self._inc(self.failures, ls + (reason,))

    def _inc(self, counter: Counter, labels: tuple[str, ...]) -> None:
        counter.labels(*labels).inc()
        key = (counter, labels)
        self._seen.setdefault(key, math.nan)
        self._touched.add(key)

    def tick(self, snap, now_wall_ns: int) -> None:
        now_s = now_wall_ns / 1e9
        for key in self._touched:
            self._seen[key] = now_s
        self._touched.clear()
        horizon = now_s - self.metrics.series_ttl_s
        for key in [k for k, t in self._seen.items() if t < horizon]:
            del self._seen[key]
            key[0].remove(*key[1])

    def close(self) -> None:
        pass
