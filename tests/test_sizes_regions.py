"""Size classes, transfer rates and regions (aggregator/sizes.py, aggregator/regions.py),
and the two throughput histograms (aggregator/throughput.py)."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from s3slower.aggregator import throughput
from s3slower.aggregator.metrics import OTHER, Metrics
from s3slower.aggregator.regions import region_of
from s3slower.aggregator.sizes import MIB, SIZE_CLASSES, size_class, transfer_rate
from s3slower.aggregator.throughput import ThroughputMetrics
from test_metrics import rec


@pytest.mark.parametrize("nbytes,want", [
    (0, "<1MiB"), (MIB - 1, "<1MiB"), (MIB, "1-16MiB"), (16 * MIB - 1, "1-16MiB"),
    (16 * MIB, "16-128MiB"), (128 * MIB - 1, "16-128MiB"), (128 * MIB, ">=128MiB"),
    (5 << 40, ">=128MiB")])
def test_size_class_bounds(nbytes, want):
    assert size_class(nbytes) == want in SIZE_CLASSES


def test_a_record_is_classed_by_the_bytes_it_moved_both_ways():
    assert rec(request_size=MIB // 2, response_size=MIB // 2).size_class == "1-16MiB"
    assert rec(request_size=0, response_size=0).to_json_dict()["size_class"] == "<1MiB"


def test_transfer_rate_of_reads_and_writes_only():
    assert transfer_rate("PutObject", 8 * MIB, 0, 2 * 10**9, 0) == 4 * MIB
    assert transfer_rate("UploadPart", 10**6, 0, 10**9, 5) == 10**6
    assert transfer_rate("GetObject", 0, 10**6, 0, 5 * 10**8) == 2 * 10**6
    assert transfer_rate("GetObject", 0, 10**6, 0, 0) is None       # within one read
    assert transfer_rate("GetObject", 0, 0, 0, 10**6) is None        # no body
    assert transfer_rate("ListObjectsV2", 0, 10**6, 0, 10**9) is None
    assert transfer_rate("CopyObject", 10**6, 0, 10**9, 10**9) is None


@pytest.mark.parametrize("header,host,want", [
    ("eu-west-1", "127.0.0.1:9000", "eu-west-1"),            # the header wins
    ("", "s3.eu-west-1.amazonaws.com", "eu-west-1"),
    ("", "bucket.s3.us-west-2.amazonaws.com:443", "us-west-2"),
    ("", "bucket.s3-us-west-2.amazonaws.com", "us-west-2"),
    ("", "b.s3.dualstack.ap-southeast-2.amazonaws.com", "ap-southeast-2"),
    ("", "s3-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
    ("", "ap-123456789012.s3-accesspoint.eu-central-1.amazonaws.com", "eu-central-1"),
    ("", "s3.cn-north-1.amazonaws.com.cn", "cn-north-1"),
    ("", "S3.EU-WEST-3.AMAZONAWS.COM", "eu-west-3"),
    ("", "s3.amazonaws.com", ""),                            # global: no region
    ("", "bucket.s3.amazonaws.com", ""),
    ("", "s3.eu-west-1.amazonaws.com.evil.example", ""),
    ("", "minio.lan:9000", ""), ("", "[::1]:9000", ""), ("", "", ""),
    ("not a region\r\n", "s3.eu-west-1.amazonaws.com", ""),   # a bad header says nothing
])
def test_region(header, host, want):
    assert region_of(header, host) == want


def _sink(reg, **kw) -> ThroughputMetrics:
    m = Metrics(reg)
    return ThroughputMetrics(reg, m.overflow.labels(throughput.OVERFLOW_LABEL).inc, **kw)


def test_latency_by_size_and_transfer_rate_histograms():
    reg = CollectorRegistry()
    t = _sink(reg)
    t.emit(rec(operation="GetObject", response_size=20 * MIB, ttfb_ns=10**8,
               latency_ns=10**8 + 2 * 10**9))                  # 20 MiB in 2 s
    t.emit(rec(operation="PutObject", method="PUT", request_size=MIB, response_size=0,
               send_ns=10**9 // 4, latency_ns=3 * 10**8))       # 1 MiB in 0.25 s
    t.emit(rec(operation="ListObjectsV2", response_size=500, latency_ns=5 * 10**6))
    t.emit(rec(operation="GetObject", complete=False, response_size=MIB))
    g = reg.get_sample_value
    size = "s3slower_request_duration_by_size_ms"
    assert g(size + "_count", {"hostname": "h1", "s3_operation": "GetObject",
                               "size_class": "16-128MiB"}) == 1
    assert g(size + "_sum", {"hostname": "h1", "s3_operation": "GetObject",
                             "size_class": "16-128MiB"}) == pytest.approx(2100)
    assert g(size + "_count", {"hostname": "h1", "s3_operation": "PutObject",
                               "size_class": "1-16MiB"}) == 1
    assert g(size + "_count", {"hostname": "h1", "s3_operation": "ListObjectsV2",
                               "size_class": "<1MiB"}) == 1
    assert g(size + "_count", {"hostname": "h1", "s3_operation": "GetObject",
                               "size_class": "1-16MiB"}) is None    # incomplete
    rate = "s3slower_transfer_rate_bytes_per_second"
    assert g(rate + "_sum", {"hostname": "h1", "s3_operation": "GetObject"}) == \
        pytest.approx(10 * MIB)
    assert g(rate + "_bucket", {"hostname": "h1", "s3_operation": "GetObject",
                                "le": "1e+07"}) == 0
    assert g(rate + "_bucket", {"hostname": "h1", "s3_operation": "GetObject",
                                "le": "2.5e+07"}) == 1
    assert g(rate + "_sum", {"hostname": "h1", "s3_operation": "PutObject"}) == \
        pytest.approx(4 * MIB)
    assert g(rate + "_count", {"hostname": "h1", "s3_operation": "ListObjectsV2"}) is None


def test_throughput_series_are_capped_and_expire(monkeypatch):
    monkeypatch.setattr(throughput, "MAX_SERIES", 2)
    reg = CollectorRegistry()
    t = _sink(reg, client_label=True, series_ttl_s=60)
    for host in ("a", "b", "c", "d"):
        t.emit(rec(hostname=host, client="boto3"))
    g = reg.get_sample_value
    size = "s3slower_request_duration_by_size_ms_count"
    lab = {"s3_operation": "GetObject", "size_class": "<1MiB", "client": "boto3"}
    assert g(size, {**lab, "hostname": "a"}) == 1
    assert g(size, {**lab, "hostname": "c"}) is None
    assert g(size, {"hostname": OTHER, "s3_operation": OTHER, "size_class": OTHER,
                    "client": OTHER}) == 2
    assert g("s3slower_label_overflow_total", {"label": "size_series"}) == 4   # both families
    t.tick(None, 0)
    t.emit(rec(hostname="a", client="boto3"))
    t.tick(None, 50 * 10**9)
    t.tick(None, 100 * 10**9)          # "a" seen at 50 s stays; __other__, seen at 0 s, goes
    assert g(size, {**lab, "hostname": "a"}) == 2
    assert g(size, {"hostname": OTHER, "s3_operation": OTHER, "size_class": OTHER,
                    "client": OTHER}) is None


def test_client_label_only_when_asked_and_bounded():
    reg = CollectorRegistry()
    Metrics(reg).observe(rec(client="boto3"))
    assert reg.get_sample_value("s3slower_requests_total", {
        "hostname": "h1", "comm": "aws", "s3_operation": "GetObject", "bucket": "b",
        "endpoint": "s3.local:9000"}) == 1
    reg = CollectorRegistry()
    m = Metrics(reg, extra_label_keys=("team",), container_label=True, client_label=True)
    assert m.label_names[-2:] == ("container_id", "client")
    m.observe(rec(client="aws-cli"))
    assert reg.get_sample_value("s3slower_requests_total", {
        "hostname": "h1", "comm": "aws", "s3_operation": "GetObject", "bucket": "b",
        "endpoint": "s3.local:9000", "team": "", "container_id": "",
        "client": "aws-cli"}) == 1
    assert m._caps[-1].limit == 20      # the 19 names and __other__
