"""OTLP out (aggregator/otlp.py, otlp_attrs.py): records through the real SDK
and its real exporters into real receivers (tests/otlp_receiver.py), over
http/protobuf and gRPC; the bound, the drops and their count; no SDK import
when OTLP is off; one line when its packages are missing."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import VENV_BIN, free_port, wait_until
from otlp_receiver import GrpcReceiver, HttpReceiver
from s3slower.aggregator.containers import Container
from s3slower.aggregator.otlp import DURATION, DURATION_BUCKETS_S, OtlpSink
from s3slower.aggregator.otlp_attrs import server, span_attributes
from s3slower.aggregator.records import Record
from s3slower.common.otlpconfig import OtlpConfig

T0 = 1_764_000_000_123_456_789          # a wall-clock start, ns


def rec(**kw) -> Record:
    base = dict(start_wall_ns=T0, hostname="host-a", pid=41, tid=42, comm="python3",
                method="GET", operation="GetObject", bucket="bkt", key="dir/k 1",
                endpoint="127.0.0.1:9000", path="/bkt/dir/k%201", status_code=200,
                error_code="", request_size=0, response_size=1234, ttfb_ns=2_000_000,
                latency_ns=5_000_000, tls="none", complete=True, labels={})
    base.update(kw)
    return Record(**base)


PUT = rec(method="PUT", operation="PutObject", request_size=99, response_size=0,
          ttfb_ns=7_000_000, latency_ns=8_000_000, start_wall_ns=T0 + 10**9)
MISSING = rec(status_code=404, error_code="NoSuchKey", key="gone", start_wall_ns=T0 + 2 * 10**9)
CUT = rec(status_code=0, complete=False, ttfb_ns=0, latency_ns=30_000_000,
          start_wall_ns=T0 + 3 * 10**9)


@pytest.fixture(params=["http/protobuf", "grpc"])
def receiver(request):
    r = HttpReceiver() if request.param == "http/protobuf" else GrpcReceiver()
    r.protocol = request.param
    yield r
    r.close()


def sink_for(receiver, **kw) -> OtlpSink:
    return OtlpSink(OtlpConfig(enabled=True, endpoint=receiver.url, protocol=receiver.protocol,
                               **kw))


def by_start(spans):
    return {s["start"]: s for s in spans}


# -- the mapping -------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint, tls, want", [
    ("s3.example.com", "openssl", ("s3.example.com", 443)),
    ("s3.example.com", "none", ("s3.example.com", 80)),
    ("minio.lan:9000", "openssl", ("minio.lan", 9000)),
    ("[::1]:9000", "none", ("::1", 9000)),
    ("[fd00::5]", "go", ("fd00::5", 443)),
])
def test_server_address_and_port(endpoint, tls, want):
    assert server(endpoint, tls) == want


def test_key_only_when_asked_request_id_and_container_when_known():
    plain = span_attributes(rec(), object_key=False)
    assert "aws.s3.key" not in plain and "aws.request_id" not in plain
    assert "container.id" not in plain and "error.type" not in plain
    assert span_attributes(rec(), object_key=True)["aws.s3.key"] == "dir/k 1"

    class WithId(Record):               # a Record as 15.x gives it: with request_id
        __slots__ = ("request_id",)
    r = WithId(**{f: getattr(rec(), f) for f in Record.__dataclass_fields__})
    r.request_id = "C9ER4AJX75574TDJ"
    assert span_attributes(r, object_key=False)["aws.request_id"] == "C9ER4AJX75574TDJ"
    boxed = rec(container=Container(cgroup="/x", id="abc123", pid=7))
    assert span_attributes(boxed, object_key=False)["container.id"] == "abc123"


# -- through the SDK into a receiver ------------------------------------------------------

def test_spans_match_the_records_attribute_by_attribute(receiver):
    sink = sink_for(receiver, object_key=True)
    for r in (rec(), PUT, MISSING, CUT):
        sink.emit(r)
    sink.close()
    spans = by_start(receiver.spans())
    assert sorted(spans) == [T0, PUT.start_wall_ns, MISSING.start_wall_ns, CUT.start_wall_ns]
    get = spans[T0]
    assert get["name"] == "S3.GetObject" and get["kind"] == 3          # SPAN_KIND_CLIENT
    assert get["end"] == T0 + 5_000_000
    assert get["events"] == [("ttfb", T0 + 2_000_000)]
    assert get["status"] == 0                                          # unset: no error
    assert get["attributes"] == {
        "rpc.system": "aws-api", "rpc.service": "S3", "rpc.method": "GetObject",
        "aws.s3.bucket": "bkt", "aws.s3.key": "dir/k 1", "http.request.method": "GET",
        "http.response.status_code": 200, "server.address": "127.0.0.1", "server.port": 9000,
        "host.name": "host-a", "process.pid": 41, "thread.id": 42,
        "process.executable.name": "python3", "http.request.body.size": 0,
        "http.response.body.size": 1234}
    assert get["resource"]["service.name"] == "s3slower" and get["scope"] == "s3slower"
    put = spans[PUT.start_wall_ns]
    assert (put["name"], put["attributes"]["http.request.method"]) == ("S3.PutObject", "PUT")
    assert put["attributes"]["http.request.body.size"] == 99
    assert put["end"] - put["start"] == 8_000_000
    missing = spans[MISSING.start_wall_ns]
    assert missing["attributes"]["error.type"] == "NoSuchKey" and missing["status"] == 2
    assert missing["attributes"]["http.response.status_code"] == 404
    cut = spans[CUT.start_wall_ns]
    assert cut["attributes"]["error.type"] == "incomplete" and cut["status"] == 2
    assert "http.response.status_code" not in cut["attributes"] and cut["events"] == []
    assert sink.statistics().spans_exported == 4 and sink.lost() == 0


def test_histogram_in_seconds_with_the_low_cardinality_attributes(receiver):
    sink = sink_for(receiver, object_key=True)
    for r in (rec(), rec(latency_ns=20_000_000), PUT, MISSING, CUT):
        sink.emit(r)
    sink.close()                                    # the reader's last export
    points = receiver.points(DURATION)
    common = {"rpc.system": "aws-api", "rpc.service": "S3", "aws.s3.bucket": "bkt",
              "server.address": "127.0.0.1", "server.port": 9000, "host.name": "host-a"}
    get = frozenset({**common, "rpc.method": "GetObject", "http.request.method": "GET",
                     "http.response.status_code": 200}.items())
    put = frozenset({**common, "rpc.method": "PutObject", "http.request.method": "PUT",
                     "http.response.status_code": 200}.items())
    missing = frozenset({**common, "rpc.method": "GetObject", "http.request.method": "GET",
                         "http.response.status_code": 404, "error.type": "NoSuchKey"}.items())
    assert set(points) == {get, put, missing}       # the incomplete one is not observed
    count, total, buckets, bounds, unit, temporality = points[get]
    assert (count, unit, temporality) == (2, "s", 2)   # AGGREGATION_TEMPORALITY_CUMULATIVE
    assert total == pytest.approx(0.025)
    assert bounds == DURATION_BUCKETS_S and sum(buckets) == 2
    assert points[put][:2] == (1, pytest.approx(0.008))
    assert points[missing][0] == 1


def test_a_hung_receiver_blocks_nothing_and_the_drops_are_counted(receiver):
    receiver.hold()
    sink = sink_for(receiver, max_queued_spans=4, metrics=False)
    records = [rec(start_wall_ns=T0 + i) for i in range(10)]
    for r in records:
        sink.emit(r)                                # returns: the exporter's thread waits
    st = sink.statistics()
    assert (st.spans_made, st.spans_dropped, sink.lost()) == (4, 6, 6)
    wait_until(lambda: receiver.held, 30, "the first export to reach the receiver")
    receiver.release()
    wait_until(lambda: sink.statistics().spans_exported == 4, 30, "the held export to end")
    sink.emit(rec(start_wall_ns=T0 + 100))          # room again
    sink.close()
    assert sorted(by_start(receiver.spans())) == [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 100]
    assert sink.lost() == 6 and sink.statistics().spans_exported == 5


def test_receiver_down_every_span_is_counted_lost():
    port = free_port()                              # nothing listens there
    sink = OtlpSink(OtlpConfig(enabled=True, endpoint=f"http://127.0.0.1:{port}"))
    for i in range(3):
        sink.emit(rec(start_wall_ns=T0 + i))
    sink.close()
    st = sink.statistics()
    assert st.spans_made == 3 and st.spans_exported == 0
    assert sink.lost() == 3 == st.spans_failed + st.spans_unsent


def test_one_line_when_exports_fail_and_one_when_they_work_again(caplog):
    receiver = HttpReceiver()
    receiver.protocol = "http/protobuf"
    receiver.refusing = True
    sink = sink_for(receiver, metrics=False)
    try:
        with caplog.at_level(logging.WARNING, logger="s3slower.otlp"):
            sink.emit(rec())
            wait_until(lambda: sink.statistics().spans_failed == 1, 30, "the refused export")
            sink.tick(None, 0)
            sink.tick(None, 0)
            receiver.refusing = False
            sink.emit(rec(start_wall_ns=T0 + 1))
            wait_until(lambda: sink.statistics().spans_exported == 1, 30, "the next export")
            sink.tick(None, 0)
    finally:
        sink.close()
        receiver.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"OTLP spans export to {receiver.url}/v1/traces failed; spans are dropped and "
        "counted (s3slower_events_lost_total{source=\"otlp\"}) (--debug shows why)",
        f"OTLP spans export to {receiver.url}/v1/traces works again"]
    assert sink.lost() == 1


def test_a_bad_endpoint_flag_is_a_usage_error():
    r = subprocess.run([str(VENV_BIN / "s3slower"), "aggregator", "--replay", "/dev/null",
                        "--otlp-endpoint", "otel:4318"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert "Invalid value for '--otlp-endpoint': must be an http:// or https:// URL" \
        in r.stderr, r.stderr


# -- off, or missing -----------------------------------------------------------------------

def _python(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_off_the_aggregator_imports_no_opentelemetry():
    r = _python("""
        import sys
        from s3slower import launch, preload
        from s3slower.aggregator.build import build
        from s3slower.common.settings import Settings
        preload.preload_aggregator()
        agg, outputs = build(Settings(), None, ())
        outputs.close()
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_on_without_its_packages_is_one_line(tmp_path):
    shadow = tmp_path / "shadow" / "opentelemetry"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named opentelemetry')\n")
    path = os.pathsep.join(p for p in (str(shadow.parent), os.environ.get("PYTHONPATH")) if p)
    r = subprocess.run([str(VENV_BIN / "s3slower"), "aggregator", "--replay", "/dev/null",
                        "--allow-root", "--output", "none", "--no-log", "--otlp"],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=path))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("s3slower: otlp: OTLP export needs the Python package "
                               "opentelemetry-sdk (pip install 's3slower[otlp]'"), r.stderr
