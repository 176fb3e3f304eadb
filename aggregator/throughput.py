"""Prometheus: latency by size class and the transfer rate of object bytes (item 15.2).

Two histograms beside the request series of aggregator/metrics.py, so that
"slow because big" and "slow because slow" separate:
* `s3slower_request_duration_by_size_ms{hostname,s3_operation,size_class}`:
  the latency of complete requests, by the class of the body bytes they
  moved (aggregator/sizes.py: four values).
* `s3slower_transfer_rate_bytes_per_second{hostname,s3_operation}`: bytes/s
  of body transfer of complete object reads and writes (sizes.transfer_rate).
Both add `client` when the request series do (`client_label`).

Bounded as the status series are: at most MAX_SERIES label sets per
histogram; a new one beyond is folded into one `__other__` set and counted in
`s3slower_label_overflow_total{label="size_series"}` (the `overflow` callable).
A set not seen for the series TTL is removed.  Time is an argument (`tick`).
"""
from __future__ import annotations

import math
from typing import Callable

from prometheus_client import CollectorRegistry, Histogram

from s3slower.aggregator.metrics import LATENCY_BUCKETS_MS, OTHER
from s3slower.aggregator.records import Record
from s3slower.aggregator.sizes import transfer_rate

# 100 kB/s (a starved link) to 10 GB/s (a fast NIC, page-cache reads).
RATE_BUCKETS = (1e5, 1e6, 5e6, 1e7, 2.5e7, 5e7, 1e8, 2.5e8, 5e8, 1e9, 2.5e9, 1e10)
MAX_SERIES = 10_000         # label sets per histogram: hosts x operations x 4 sizes
OVERFLOW_LABEL = "size_series"


class _Family:
    """One histogram's children by label set, capped, with their last-seen times."""

    def __init__(self, hist: Histogram, overflow: Callable[[], None]):
        self.hist, self.overflow = hist, overflow
        self.kids: dict[tuple[str, ...], object] = {}
        self.seen: dict[tuple[str, ...], float] = {}
        self.touched: set[tuple[str, ...]] = set()

    def observe(self, key: tuple[str, ...], value: float) -> None:
        kid = self.kids.get(key)
        if kid is None:
            if len(self.kids) >= MAX_SERIES:
                self.overflow()
                key = (OTHER,) * len(key)
            kid = self.kids.get(key)
            if kid is None:
                kid = self.kids[key] = self.hist.labels(*key)
                self.seen[key] = math.nan       # stamped by the next tick
        kid.observe(value)
        self.touched.add(key)

    def tick(self, now_s: float, horizon_s: float) -> None:
        for key in self.touched:
            self.seen[key] = now_s
        self.touched.clear()
        for key in [k for k, t in self.seen.items() if t < horizon_s]:
            del self.seen[key], self.kids[key]
            self.hist.remove(*key)


class ThroughputMetrics:
    """A sink: `emit` per record, `tick` per second (expiry)."""

    def __init__(self, registry: CollectorRegistry, overflow: Callable[[], None], *,
                 client_label: bool = False, series_ttl_s: float = 600.0):
        self.client_label = client_label
        self.series_ttl_s = series_ttl_s
        extra = ("client",) if client_label else ()
        self.by_size = _Family(Histogram(
            "s3slower_request_duration_by_size_ms",
            "Request latency (ms) by the size class of the body bytes moved",
            ("hostname", "s3_operation", "size_class") + extra,
            buckets=LATENCY_BUCKETS_MS, registry=registry), overflow)
        self.rate = _Family(Histogram(
            "s3slower_transfer_rate_bytes_per_second",
            "Body transfer rate (bytes/s) of object reads and writes",
            ("hostname", "s3_operation") + extra, buckets=RATE_BUCKETS, registry=registry),
            overflow)

    def emit(self, rec: Record) -> None:
        if not rec.complete:
            return
        extra = (rec.client,) if self.client_label else ()
        self.by_size.observe((rec.hostname, rec.operation, rec.size_class) + extra,
                             rec.latency_ms)
        rate = transfer_rate(rec.operation, rec.request_size, rec.response_size,
                             rec.send_ns, rec.latency_ns - rec.ttfb_ns)
        if rate is not None:
            self.rate.observe((rec.hostname, rec.operation) + extra, rate)

    def tick(self, snap, now_wall_ns: int) -> None:
        now_s = now_wall_ns / 1e9
        for family in (self.by_size, self.rate):
            family.tick(now_s, now_s - self.series_ttl_s)

    def close(self) -> None:
        pass
