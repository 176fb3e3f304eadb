"""Prometheus metrics of the aggregator (SPEC §6), client_python the documented way.

Invariants
* One private `CollectorRegistry`, passed in; this module has no global state.
* Every label is bounded (STYLE habit 8).  Each label of the request series takes
  at most a named number of distinct values, `__other__` included: the bucket
  label `max_buckets`, the hostname MAX_HOSTNAMES, every other one
  MAX_LABEL_VALUES, the optional `container_id` MAX_CONTAINER_VALUES and
  `client` (aggregator/useragent.py's names, `client_label`).  A value
  beyond its cap is exported as `__other__` and counted in
  `s3slower_label_overflow_total{label}`.  Whole label sets are
  capped at MAX_LABEL_SETS the same way.
* Label sets not seen for `series_ttl_s` (exited processes, finished jobs) are
  removed with `.remove(*labels)` and counted in `s3slower_series_expired_total`;
  their values free room under the caps.  A label set that comes back starts
  its counters from zero, which Prometheus reads as a counter reset.
* Time is an argument (habit 7): `observe` takes none, `tick(now_s)` stamps what
  was observed since the previous tick, rolls the min/max interval, marks
  collectors down and expires series.

What the request series count
* `s3slower_requests_total`: every record; `s3slower_request_errors_total`: the
  records with `is_error` (4xx/5xx, or incomplete).
* `s3slower_incomplete_requests_total`: records whose response never finished
  (timeout, close, eviction).  Their latency is not a measured completion, so
  they are *not* observed by the duration/ttfb histograms nor the min/max gauges.
* `s3slower_partial_requests_total`: the Go tool's "multipart requests": records
  whose operation is one of MULTIPART_OPERATIONS (the parts of a multipart
  upload, its creation, completion and abort).
* `s3slower_request_duration_min_ms` / `_max_ms`: min and max latency of the
  collection interval (`interval_s`) that last ended; a label set with no
  completed request in that interval has no sample (its children are removed).
* `s3slower_response_status_total{hostname,s3_operation,status_code}`:
  status_code "0" means no response was seen.
* `s3slower_events_lost_total{source}`, `s3slower_tracer_errors_total{source}`
  and `s3slower_skipped_bytes_total{source}` are the ledger's (aggregator/
  ledger.py): read from the tick's snapshot at scrape time, every source
  exported from 0 on.
* `s3slower_collector_up{hostname}` is 0 once no heartbeat came for
  COLLECTOR_DOWN_AFTER_S; `s3slower_collector_last_heartbeat_timestamp_seconds`
  is the wall time of the last one.
* `s3slower_label_values{label}`: distinct values in use per label, to compare
  with the caps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from s3slower.aggregator.ledger import EMPTY, LedgerCollector, Snapshot, health_detail
from s3slower.aggregator.records import Record
from s3slower.aggregator.useragent import CLIENTS

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
BASE_LABELS = ("hostname", "comm", "s3_operation", "bucket", "endpoint")
CONTAINER_LABEL = "container_id"    # optional, off: the Go tool's label set
CLIENT_LABEL = "client"             # optional, off, bounded by useragent.CLIENTS
OTHER = "__other__"
MULTIPART_OPERATIONS = frozenset({
    "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "CompleteMultipartUpload", "AbortMultipartUpload"})
# Collectors heartbeat every second (SPEC §7): three missed ones mean down.
COLLECTOR_DOWN_AFTER_S = 3.0
# Longer than Prometheus' 5 min staleness window, so a series that pauses
# between two jobs is not reset; short enough that exited processes go away.
DEFAULT_SERIES_TTL_S = 600.0
MAX_HOSTNAMES = 10_000          # a fleet; matches pipeline.MAX_COLLECTORS
# comm, s3_operation, endpoint and each prom_labels key: the S3 model has
# ~100 operations, a host a few dozen clients and endpoints.
MAX_LABEL_VALUES = 1_000
# Each label set costs ~40 series (two histograms); 50k sets ~ 2M series is
# the most one Prometheus target should ever carry.
MAX_LABEL_SETS = 50_000
MAX_CONTAINER_VALUES = 500      # kubelet's --max-pods is 110, a few containers each
MAX_STATUS_SERIES = 10_000      # (hostname, operation, status) triples


@dataclass(frozen=True)
class MetricsStatistics:
    records: int
    label_sets: int
    status_series: int
    series_expired: int
    overflow: Mapping[str, int]          # label -> records folded into __other__
    label_values: Mapping[str, int]      # label -> distinct real values in use
    collectors_up: int
    collectors_down: int
    intervals: int


class _Children(NamedTuple):
    """One label set's children, in the order of Metrics._per_set."""
    requests: Counter
    errors: Counter
    duration: Histogram
    ttfb: Histogram
    req_bytes: Counter
    resp_bytes: Counter
    partial: Counter
    incomplete: Counter


class _ValueCap:
    """Distinct values of one label, at most `limit` including `__other__`."""

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self.refs: dict[str, int] = {}       # value -> live label sets using it

    def admit(self, value: str) -> str:
        if value in self.refs or len(self.refs) < self.limit - 1:
            return value
        return OTHER

    def hold(self, value: str) -> None:
        if value != OTHER:
            self.refs[value] = self.refs.get(value, 0) + 1

    def release(self, value: str) -> None:
        n = self.refs.get(value, 0) - 1
        if n > 0:
            self.refs[value] = n
        else:
            self.refs.pop(value, None)


class Metrics:
    def __init__(self, registry: CollectorRegistry, *,
                 extra_label_keys: tuple[str, ...] = (), max_buckets: int = 1000,
                 interval_s: float = 5.0, series_ttl_s: float = DEFAULT_SERIES_TTL_S,
                 container_label: bool = False, client_label: bool = False):
        self.extra_label_keys = tuple(extra_label_keys)
        self.container_label, self.client_label = container_label, client_label
        optional = {CONTAINER_LABEL: MAX_CONTAINER_VALUES} if container_label else {}
        optional.update({CLIENT_LABEL: len(CLIENTS) + 1} if client_label else {})
        self.label_names = BASE_LABELS + self.extra_label_keys + tuple(optional)
        self.interval_s = interval_s
        self.series_ttl_s = series_ttl_s
        limits = {"hostname": MAX_HOSTNAMES, "bucket": max_buckets}
        caps = [limits.get(n, MAX_LABEL_VALUES) for n in BASE_LABELS + self.extra_label_keys]
        self._caps = [_ValueCap(n) for n in caps + list(optional.values())]
        self._define(registry)
        self._sets: dict[tuple[str, ...], float] = {}     # label set -> last seen (s)
        self._kids: dict[tuple[str, ...], _Children] = {}
        self._status: dict[tuple[str, str, str], float] = {}
        self._touched: set[tuple[str, ...]] = set()
        self._status_touched: set[tuple[str, str, str]] = set()
        self._interval: dict[tuple[str, ...], list[float]] = {}  # set -> [min, max]
        self._published: set[tuple[str, ...]] = set()
        self._interval_start: float | None = None
        self._collectors: dict[str, float] = {}           # hostname -> last heartbeat
        self._down: set[str] = set()
        self._overflow: dict[str, int] = {}
        self._records = self._expired = self._intervals = 0

    def _define(self, r: CollectorRegistry) -> None:
        names = self.label_names
        self.requests = Counter("s3slower_requests_total", "Total S3 requests", names, registry=r)
        self.errors = Counter("s3slower_request_errors_total",
                              "Total request errors (4xx/5xx or incomplete)", names, registry=r)
        self.duration = Histogram("s3slower_request_duration_ms", "Request latency (ms)",
                                  names, buckets=LATENCY_BUCKETS_MS, registry=r)
        self.ttfb = Histogram("s3slower_time_to_first_byte_ms",
                              "Time to the first byte of the response (ms)",
                              names, buckets=LATENCY_BUCKETS_MS, registry=r)
        self.dur_min = Gauge("s3slower_request_duration_min_ms",
                             "Minimum latency over the last collection interval (ms)",
                             names, registry=r)
        self.dur_max = Gauge("s3slower_request_duration_max_ms",
                             "Maximum latency over the last collection interval (ms)",
                             names, registry=r)
        self.req_bytes = Counter("s3slower_request_bytes_total", "Total request bytes",
                                 names, registry=r)
        self.resp_bytes = Counter("s3slower_response_bytes_total", "Total response bytes",
                                  names, registry=r)
        self.partial = Counter("s3slower_partial_requests_total",
                               "Multipart requests (create, part, part copy, complete, abort)",
                               names, registry=r)
        self.incomplete = Counter("s3slower_incomplete_requests_total",
                                  "Requests whose response never finished", names, registry=r)
        self.status = Counter("s3slower_response_status_total", "Responses by status code",
                              ("hostname", "s3_operation", "status_code"), registry=r)
        self.up = Gauge("s3slower_collector_up",
                        "1 while the collector heartbeats, 0 after 3 s without", ("hostname",),
                        registry=r)
        self.heartbeat = Gauge("s3slower_collector_last_heartbeat_timestamp_seconds",
                               "Wall time of the collector's last heartbeat", ("hostname",),
                               registry=r)
        self.overflow = Counter("s3slower_label_overflow_total",
                                "Records whose label value was folded into __other__",
                                ("label",), registry=r)
        self.expired = Counter("s3slower_series_expired_total",
                               "Label sets removed after not being seen for the TTL",
                               registry=r)
        self.values = Gauge("s3slower_label_values", "Distinct values in use per label",
                            ("label",), registry=r)
        self._per_set = (self.requests, self.errors, self.duration, self.ttfb, self.req_bytes,
                         self.resp_bytes, self.partial, self.incomplete)

    # -- records -------------------------------------------------------------
    def observe(self, rec: Record) -> None:
        ls = self.label_set(rec)
        self._records += 1
        self._touched.add(ls)
        kids = self._kids[ls]
        kids.requests.inc()
        if rec.is_error:
            kids.errors.inc()
        if rec.operation in MULTIPART_OPERATIONS:
            kids.partial.inc()
        kids.req_bytes.inc(max(0, rec.request_size))
        kids.resp_bytes.inc(max(0, rec.response_size))
        if rec.complete:
            self._observe_latency(ls, kids, rec)
        else:
            kids.incomplete.inc()
        self._count_status(ls[0], ls[2], rec.status_code)

    def _observe_latency(self, ls: tuple[str, ...], kids: _Children, rec: Record) -> None:
        ms = rec.latency_ms
        kids.duration.observe(ms)
        if rec.ttfb_ns > 0:
            kids.ttfb.observe(rec.ttfb_ms)
        mm = self._interval.get(ls)
        if mm is None:
            self._interval[ls] = [ms, ms]
        else:
            mm[0], mm[1] = min(mm[0], ms), max(mm[1], ms)

    def label_set(self, rec: Record) -> tuple[str, ...]:
        raw = (rec.hostname, rec.comm, rec.operation, rec.bucket, rec.endpoint) + \
            tuple(str(rec.labels.get(k, "")) for k in self.extra_label_keys)
        if self.container_label:
            raw += (rec.container_id,)
        if self.client_label:
            raw += (rec.client,)
        if raw in self._sets:
            return raw
        ls = tuple(self._admit(name, cap, v)
                   for name, cap, v in zip(self.label_names, self._caps, raw))
        if ls in self._sets:
            return ls
        if len(self._sets) >= MAX_LABEL_SETS:
            self._count_overflow("label_set")
            ls = (OTHER,) * len(ls)
            if ls in self._sets:
                return ls
        return self._create(ls)

    def _admit(self, name: str, cap: _ValueCap, value: str) -> str:
        v = cap.admit(value)
        if v is OTHER and value != OTHER:
            self._count_overflow(name)
        return v

    def _create(self, ls: tuple[str, ...]) -> tuple[str, ...]:
        for cap, v in zip(self._caps, ls):
            cap.hold(v)
        # children made once (client_python's advice) and exported at 0 from the start
        self._kids[ls] = _Children(*(m.labels(*ls) for m in self._per_set))
        self._sets[ls] = math.nan          # stamped by the next tick
        return ls

    def _count_overflow(self, label: str) -> None:
        self._overflow[label] = self._overflow.get(label, 0) + 1
        self.overflow.labels(label).inc()

    def _count_status(self, host: str, op: str, status_code: int) -> None:
        code = str(status_code) if 0 <= status_code <= 999 else OTHER
        key = (host, op, code)
        if key not in self._status and len(self._status) >= MAX_STATUS_SERIES:
            self._count_overflow("status_series")
            key = (OTHER, OTHER, OTHER)
        self._status.setdefault(key, math.nan)
        self._status_touched.add(key)
        self.status.labels(*key).inc()

    # -- collectors --------------------------------------------------------------
    def collector_seen(self, hostname: str, now_s: float) -> None:
        """A heartbeat (or any message) from `hostname` at wall time now_s."""
        last = self._collectors.get(hostname)
        if last is None and len(self._collectors) >= MAX_HOSTNAMES:
            self._count_overflow("collector")
            return
        if last is not None and last >= now_s:
            return
        self._collectors[hostname] = now_s
        self._down.discard(hostname)
        self.heartbeat.labels(hostname).set(now_s)
        self.up.labels(hostname).set(1)

    # -- time ----------------------------------------------------------------
    def tick(self, now_s: float) -> None:
        for ls in self._touched:
            if ls in self._sets:
                self._sets[ls] = now_s
        for key in self._status_touched:
            if key in self._status:
                self._status[key] = now_s
        self._touched.clear()
        self._status_touched.clear()
        self._roll_interval(now_s)
        self._check_collectors(now_s)
        self._expire(now_s)
        for name, cap in zip(self.label_names, self._caps):
            self.values.labels(name).set(len(cap.refs))

    def _roll_interval(self, now_s: float) -> None:
        if self._interval_start is None or now_s < self._interval_start:
            self._interval_start = now_s          # first tick, or the wall clock stepped back
            return
        if now_s - self._interval_start < self.interval_s:
            return
        self._interval_start = now_s
        self._intervals += 1
        for ls in self._published - self._interval.keys():
            self.dur_min.remove(*ls)
            self.dur_max.remove(*ls)
        for ls, (lo, hi) in self._interval.items():
            self.dur_min.labels(*ls).set(lo)
            self.dur_max.labels(*ls).set(hi)
        self._published = set(self._interval)
        self._interval = {}

    def _check_collectors(self, now_s: float) -> None:
        for host, last in list(self._collectors.items()):
            if now_s - last > self.series_ttl_s:
                del self._collectors[host]
                self._down.discard(host)
                self.up.remove(host)
                self.heartbeat.remove(host)
            elif now_s - last > COLLECTOR_DOWN_AFTER_S and host not in self._down:
                self._down.add(host)
                self.up.labels(host).set(0)

    def _expire(self, now_s: float) -> None:
        horizon = now_s - self.series_ttl_s
        old = [ls for ls, seen in self._sets.items() if seen < horizon]
        for ls in old:
            self._remove_set(ls)
        for key in [k for k, seen in self._status.items() if seen < horizon]:
            del self._status[key]
            self.status.remove(*key)

    def _remove_set(self, ls: tuple[str, ...]) -> None:
        del self._sets[ls]
        del self._kids[ls]
        for m in self._per_set:
            m.remove(*ls)
        if ls in self._published:
            self._published.discard(ls)
            self.dur_min.remove(*ls)
            self.dur_max.remove(*ls)
        self._interval.pop(ls, None)
        for cap, v in zip(self._caps, ls):
            cap.release(v)
        self._expired += 1
        self.expired.inc()

    # -- snapshots ----------------------------------------------------------------
    def statistics(self) -> MetricsStatistics:
        down = len(self._down)
        return MetricsStatistics(
            records=self._records, label_sets=len(self._sets),
            status_series=len(self._status), series_expired=self._expired,
            overflow=dict(self._overflow),
            label_values={n: len(c.refs) for n, c in zip(self.label_names, self._caps)},
            collectors_up=len(self._collectors) - down, collectors_down=down,
            intervals=self._intervals)


class MetricsSink:
    """The aggregator's Sink for metrics: records, collectors, time, and the
    ledger's families (registered in `registry`, read from the last snapshot)."""

    def __init__(self, metrics: Metrics, registry: CollectorRegistry):
        self.metrics = metrics
        self.snapshot = EMPTY
        registry.register(LedgerCollector(lambda: self.snapshot.ledger))

    def emit(self, rec: Record) -> None:
        self.metrics.observe(rec)

    def tick(self, snap: Snapshot, now_wall_ns: int) -> None:
        self.snapshot = snap
        for c in snap.pipeline.collectors:
            self.metrics.collector_seen(c.hostname, c.last_heartbeat_wall_ns / 1e9)
        self.metrics.tick(now_wall_ns / 1e9)

    def health(self) -> dict:
        return health_detail(self.snapshot)

    def close(self) -> None:
        pass
