"""Prometheus output: names, labels, values, bounds, fake time, the real endpoint."""
from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from s3slower.aggregator import metrics as metrics_mod
from s3slower.aggregator.metrics import (LATENCY_BUCKETS_MS, OTHER, Metrics, MetricsSink)
from s3slower.aggregator.ledger import EMPTY, Snapshot
from s3slower.aggregator.metrics_server import serve
from s3slower.aggregator.records import Record
from s3slower.common.losses import Ledger, Loss

REFERENCE_EIGHT = (
    "s3slower_requests_total", "s3slower_request_errors_total",
    "s3slower_request_duration_ms", "s3slower_request_duration_min_ms",
    "s3slower_request_duration_max_ms", "s3slower_request_bytes_total",
    "s3slower_response_bytes_total", "s3slower_partial_requests_total")
BASE = ("hostname", "comm", "s3_operation", "bucket", "endpoint")


def rec(**kw) -> Record:
    fields = dict(start_wall_ns=1_700_000_000_000_000_000, hostname="h1", pid=42, tid=42,
                  comm="aws", method="GET", operation="GetObject", bucket="b", key="k",
                  endpoint="s3.local:9000", path="/b/k", status_code=200, error_code="",
                  request_size=0, response_size=1000, ttfb_ns=2_000_000,
                  latency_ns=12_000_000, tls="none", complete=True, labels={})
    fields.update(kw)
    return Record(**fields)


def lbl(r: Record, **extra) -> dict:
    return dict(hostname=r.hostname, comm=r.comm, s3_operation=r.operation,
                bucket=r.bucket, endpoint=r.endpoint, **extra)


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


def test_reference_metrics_values(reg):
    m = Metrics(reg, interval_s=5.0)
    m.tick(0.0)
    r = rec(request_size=10, response_size=1000, latency_ns=12_000_000)
    m.observe(r)
    m.observe(rec(latency_ns=3_000_000, response_size=500))
    m.tick(5.0)
    L = lbl(r)
    g = reg.get_sample_value
    assert g("s3slower_requests_total", L) == 2
    assert g("s3slower_request_errors_total", L) == 0
    assert g("s3slower_request_duration_ms_count", L) == 2
    assert g("s3slower_request_duration_ms_sum", L) == pytest.approx(15.0)
    assert g("s3slower_request_duration_ms_bucket", {**L, "le": "5.0"}) == 1
    assert g("s3slower_request_duration_ms_bucket", {**L, "le": "25.0"}) == 2
    assert g("s3slower_request_duration_min_ms", L) == pytest.approx(3.0)
    assert g("s3slower_request_duration_max_ms", L) == pytest.approx(12.0)
    assert g("s3slower_request_bytes_total", L) == 10
    assert g("s3slower_response_bytes_total", L) == 1500
    assert g("s3slower_partial_requests_total", L) == 0
    assert g("s3slower_time_to_first_byte_ms_count", L) == 2
    assert g("s3slower_time_to_first_byte_ms_sum", L) == pytest.approx(4.0)
    assert g("s3slower_response_status_total",
             {"hostname": "h1", "s3_operation": "GetObject", "status_code": "200"}) == 2


def test_histogram_buckets_are_1_to_10000_ms(reg):
    m = Metrics(reg)
    m.observe(rec())
    for name in ("s3slower_request_duration_ms", "s3slower_time_to_first_byte_ms"):
        fam = next(f for f in reg.collect() if f.name == name)
        les = [s.labels["le"] for s in fam.samples if s.name == name + "_bucket"]
        assert les == [str(float(b)) for b in LATENCY_BUCKETS_MS] + ["+Inf"]
    assert LATENCY_BUCKETS_MS[0] == 1 and LATENCY_BUCKETS_MS[-1] == 10000


def test_errors_incomplete_and_status(reg):
    m = Metrics(reg)
    m.observe(rec(status_code=404, error_code="NoSuchKey"))
    m.observe(rec(status_code=0, complete=False, latency_ns=60_000_000_000))
    r = rec()
    g = reg.get_sample_value
    assert g("s3slower_requests_total", lbl(r)) == 2
    assert g("s3slower_request_errors_total", lbl(r)) == 2
    assert g("s3slower_incomplete_requests_total", lbl(r)) == 1
    # the incomplete one is not a measured latency
    assert g("s3slower_request_duration_ms_count", lbl(r)) == 1
    st = {"hostname": "h1", "s3_operation": "GetObject"}
    assert g("s3slower_response_status_total", {**st, "status_code": "404"}) == 1
    assert g("s3slower_response_status_total", {**st, "status_code": "0"}) == 1


def test_partial_counts_multipart_operations_only(reg):
    m = Metrics(reg)
    ops = ["CreateMultipartUpload", "UploadPart", "UploadPart", "UploadPartCopy",
           "CompleteMultipartUpload", "AbortMultipartUpload", "GetObject", "PutObject"]
    for op in ops:
        m.observe(rec(operation=op))
    g = reg.get_sample_value
    for op in set(ops):
        want = ops.count(op) if op in metrics_mod.MULTIPART_OPERATIONS else 0
        assert g("s3slower_partial_requests_total", lbl(rec(operation=op))) == want


def test_extra_labels_from_record_labels(reg):
    m = Metrics(reg, extra_label_keys=("client", "env"))
    m.observe(rec(labels={"client": "aws-cli", "env": "prod"}))
    m.observe(rec(labels={"client": "boto3"}))
    g = reg.get_sample_value
    assert g("s3slower_requests_total", lbl(rec(), client="aws-cli", env="prod")) == 1
    assert g("s3slower_requests_total", lbl(rec(), client="boto3", env="")) == 1


def test_min_max_are_those_of_the_interval_that_last_ended(reg):
    m = Metrics(reg, interval_s=5.0)
    L = lbl(rec())
    g = reg.get_sample_value
    m.tick(100.0)
    m.observe(rec(latency_ns=5_000_000))
    m.observe(rec(latency_ns=50_000_000))
    m.tick(103.0)                                  # interval not over yet
    assert g("s3slower_request_duration_min_ms", L) is None
    m.tick(105.0)
    assert (g("s3slower_request_duration_min_ms", L), g("s3slower_request_duration_max_ms", L)) \
        == (5.0, 50.0)
    m.observe(rec(latency_ns=7_000_000))
    m.tick(110.0)
    assert (g("s3slower_request_duration_min_ms", L), g("s3slower_request_duration_max_ms", L)) \
        == (7.0, 7.0)
    m.tick(115.0)                                  # an interval without requests
    assert g("s3slower_request_duration_min_ms", L) is None
    assert g("s3slower_request_duration_max_ms", L) is None
    assert m.statistics().intervals == 3


def _ledger_tick(sink: MetricsSink, counts: dict, now_ns: int = 0, collectors=()) -> None:
    stats = dataclasses.replace(EMPTY.pipeline, collectors=tuple(collectors))
    sink.tick(Snapshot(stats, Ledger.of(counts)), now_ns)


def test_ledger_is_exported_as_it_is_at_scrape_time(reg):
    sink = MetricsSink(Metrics(reg), reg)
    def g(loss: Loss):
        return reg.get_sample_value(loss.family.metric + "_total", {"source": loss.label})

    assert all(g(m) == 0 for m in Loss)            # every source exported, from 0 on
    _ledger_tick(sink, {Loss.RINGBUF: 5, Loss.SUPERSEDED: 2, Loss.STREAM_SKIPPED: 30})
    assert (g(Loss.RINGBUF), g(Loss.SUPERSEDED), g(Loss.STREAM_SKIPPED)) == (5, 2, 30)
    assert g(Loss.TRANSPORT) == 0
    _ledger_tick(sink, {Loss.RINGBUF: 12, Loss.TRANSPORT: 4})
    assert g(Loss.TRANSPORT) == 4 and g(Loss.RINGBUF) == 12
    families = {f.name for f in reg.collect()}
    assert {"s3slower_events_lost", "s3slower_tracer_errors",
            "s3slower_skipped_bytes"} <= families


def test_collector_up_drops_after_3s_without_heartbeat(reg):
    m = Metrics(reg)
    def up():
        return reg.get_sample_value("s3slower_collector_up", {"hostname": "c1"})

    m.collector_seen("c1", 1000.0)
    m.tick(1000.5)
    assert up() == 1
    assert reg.get_sample_value("s3slower_collector_last_heartbeat_timestamp_seconds",
                                {"hostname": "c1"}) == 1000.0
    m.tick(1003.0)
    assert up() == 1
    m.tick(1003.1)
    assert up() == 0
    assert m.statistics().collectors_down == 1
    m.collector_seen("c1", 1004.0)
    assert up() == 1 and m.statistics().collectors_up == 1
    m.collector_seen("c1", 1002.0)                 # an older stamp changes nothing
    assert reg.get_sample_value("s3slower_collector_last_heartbeat_timestamp_seconds",
                                {"hostname": "c1"}) == 1004.0
    m.tick(1004.0 + metrics_mod.DEFAULT_SERIES_TTL_S + 1)
    assert up() is None                            # long gone: forgotten


def test_label_sets_of_exited_processes_expire(reg):
    m = Metrics(reg, series_ttl_s=60.0, interval_s=5.0)
    gone, alive = rec(comm="job-1"), rec(comm="daemon")
    m.tick(0.0)
    m.observe(gone)
    m.observe(alive)
    m.tick(5.0)
    assert reg.get_sample_value("s3slower_request_duration_max_ms", lbl(gone)) == 12.0
    for t in range(10, 75, 5):
        m.observe(alive)
        m.tick(float(t))
    g = reg.get_sample_value
    assert g("s3slower_requests_total", lbl(gone)) is None
    assert g("s3slower_request_duration_ms_count", lbl(gone)) is None
    assert g("s3slower_requests_total", lbl(alive)) == 14
    assert g("s3slower_series_expired_total") == 1
    assert m.statistics().label_sets == 1
    assert m.statistics().label_values["comm"] == 1
    m.observe(gone)                                # it may come back, from zero
    assert g("s3slower_requests_total", lbl(gone)) == 1


def _series(reg, name: str) -> list[dict]:
    return [s.labels for f in reg.collect() for s in f.samples if s.name == name]


def _total(reg, name: str) -> float:
    return sum(s.value for f in reg.collect() for s in f.samples if s.name == name)


def test_5000_buckets_stay_bounded(reg):
    m = Metrics(reg, max_buckets=1000)
    for i in range(5000):
        m.observe(rec(bucket=f"bucket-{i:05d}"))
    series = _series(reg, "s3slower_requests_total")
    buckets = {s["bucket"] for s in series}
    assert len(series) <= 1000 and len(buckets) <= 1000
    assert OTHER in buckets
    g = reg.get_sample_value
    assert g("s3slower_requests_total", lbl(rec(bucket=OTHER))) == 5000 - 999
    assert g("s3slower_requests_total", lbl(rec(bucket="bucket-00000"))) == 1
    assert g("s3slower_label_overflow_total", {"label": "bucket"}) == 5000 - 999
    assert _total(reg, "s3slower_requests_total") == 5000
    assert len(_series(reg, "s3slower_request_duration_ms_bucket")) <= 1000 * 14


def test_expired_buckets_free_room_under_the_cap(reg):
    m = Metrics(reg, max_buckets=3, series_ttl_s=10.0)
    m.tick(0.0)
    for b in ("a", "b", "c"):
        m.observe(rec(bucket=b))
    assert {s["bucket"] for s in _series(reg, "s3slower_requests_total")} == {"a", "b", OTHER}
    m.tick(1.0)
    m.tick(20.0)
    m.observe(rec(bucket="d"))
    assert {s["bucket"] for s in _series(reg, "s3slower_requests_total")} == {"d"}


def test_whole_label_sets_are_capped(reg, monkeypatch):
    monkeypatch.setattr(metrics_mod, "MAX_LABEL_SETS", 10)
    m = Metrics(reg)
    for i in range(50):
        m.observe(rec(comm=f"c{i}"))
    assert len(_series(reg, "s3slower_requests_total")) == 11
    assert reg.get_sample_value("s3slower_requests_total",
                                {n: OTHER for n in BASE}) == 40


def test_statistics_is_a_frozen_snapshot(reg):
    m = Metrics(reg)
    m.observe(rec())
    s = m.statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.records = 0                              # type: ignore[misc]
    m.observe(rec())
    assert s.records == 1 and m.statistics().records == 2


def test_sink_feeds_loss_collectors_and_time(reg):
    m = Metrics(reg)
    sink = MetricsSink(m, reg)
    coll = SimpleNamespace(hostname="c1", last_heartbeat_wall_ns=5_000_000_000)
    counts = {Loss.RINGBUF: 7, Loss.TERMINAL: 3}
    sink.emit(rec())
    _ledger_tick(sink, counts, 6_000_000_000, [coll])
    g = reg.get_sample_value
    assert g("s3slower_events_lost_total", {"source": "ringbuf"}) == 7
    assert g("s3slower_events_lost_total", {"source": "terminal"}) == 3
    assert g("s3slower_collector_up", {"hostname": "c1"}) == 1
    _ledger_tick(sink, counts, 9_000_000_000, [coll])
    assert g("s3slower_collector_up", {"hostname": "c1"}) == 0
    assert g("s3slower_requests_total", lbl(rec())) == 1


# -- the real HTTP endpoint ---------------------------------------------------------

def _scrape(port: int, host: str = "127.0.0.1") -> dict:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _counter_values(fams: dict) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in fams.values() if f.type in ("counter", "histogram")
            for s in f.samples if not s.name.endswith("_created")}


@pytest.fixture
def endpoint(reg):
    server = serve(reg, "::", 0)
    yield server
    server.close()


def test_endpoint_names_labels_and_growing_counters(reg, endpoint):
    m = Metrics(reg, extra_label_keys=("client",))
    sink = MetricsSink(m, reg)
    m.tick(0.0)
    m.collector_seen("h1", 4.5)
    _ledger_tick(sink, {Loss.RINGBUF: 2}, 0)
    m.observe(rec(operation="UploadPart", request_size=5 << 20, labels={"client": "aws"}))
    m.observe(rec(status_code=503, labels={"client": "aws"}))
    m.tick(5.0)
    first = _scrape(endpoint.port)
    names = {"s3slower_requests", "s3slower_request_errors", "s3slower_request_duration_ms",
             "s3slower_request_duration_min_ms", "s3slower_request_duration_max_ms",
             "s3slower_request_bytes", "s3slower_response_bytes", "s3slower_partial_requests",
             "s3slower_time_to_first_byte_ms", "s3slower_response_status",
             "s3slower_events_lost", "s3slower_collector_up",
             "s3slower_incomplete_requests"}
    assert names <= set(first)       # the text parser drops counters' _total suffix
    per_request = [n for n in names if n not in {"s3slower_response_status",
                                                 "s3slower_events_lost",
                                                 "s3slower_collector_up"}]
    for name in per_request:
        for s in first[name].samples:
            if not s.name.endswith("_created"):
                assert set(s.labels) - {"le"} == set(BASE) | {"client"}, s
    assert {tuple(sorted(s.labels)) for s in first["s3slower_response_status"].samples} \
        == {("hostname", "s3_operation", "status_code")}
    assert {tuple(s.labels) for s in first["s3slower_events_lost"].samples} == {("source",)}
    up = [s for s in first["s3slower_collector_up"].samples]
    assert [(s.labels, s.value) for s in up] == [({"hostname": "h1"}, 1.0)]

    m.observe(rec(labels={"client": "aws"}))
    _ledger_tick(sink, {Loss.RINGBUF: 6}, 10 * 10**9)
    second = _scrape(endpoint.port)
    before, after = _counter_values(first), _counter_values(second)
    assert before.keys() <= after.keys()
    assert all(after[k] >= v for k, v in before.items())
    key = ("s3slower_requests_total", tuple(sorted({**lbl(rec()), "client": "aws"}.items())))
    assert (before[key], after[key]) == (1.0, 2.0)
    lost = ("s3slower_events_lost_total", (("source", "ringbuf"),))
    assert (before[lost], after[lost]) == (2.0, 6.0)


def test_endpoint_health_and_ipv4_on_dual_stack_host(reg, endpoint):
    for host in ("127.0.0.1", "localhost"):
        with urllib.request.urlopen(f"http://{host}:{endpoint.port}/health",
                                    timeout=10) as resp:
            assert (resp.status, resp.read()) == (200, b"ok\n")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/nope", timeout=10)
    assert e.value.code == 404


def test_endpoint_on_ipv4_host(reg):
    server = serve(reg, "127.0.0.1", 0)
    try:
        Metrics(reg).observe(rec())
        fams = _scrape(server.port)
        assert fams["s3slower_requests"].samples[0].value == 1
    finally:
        server.close()


def test_interval_survives_the_wall_clock_stepping_back(reg):
    m = Metrics(reg, interval_s=5.0)
    m.tick(1000.0)
    m.tick(10.0)                                   # NTP stepped the clock back
    m.observe(rec(latency_ns=4_000_000))
    m.tick(15.0)
    assert reg.get_sample_value("s3slower_request_duration_max_ms", lbl(rec())) == 4.0
