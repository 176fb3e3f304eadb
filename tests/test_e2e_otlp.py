"""OTLP out end to end: real boto3 against moto, real BPF, `s3slower run --otlp`
into a real receiver in this test (tests/otlp_receiver.py: http/protobuf and
gRPC, decoding with opentelemetry-proto).

Each request on the JSON output is one span, attribute by attribute, and the
histogram's points count them; with a receiver that takes exports and never
answers, every request is still on the JSON output, the drops show in
/metrics while it runs and, to the request, in the stop summary; the same
with no receiver at all."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from urllib.request import urlopen

import pytest

from conftest import Tracer, free_port, need_root_bpf, readable_dir, wait_until
from fleet import GatedClient
from otlp_receiver import GrpcReceiver, HttpReceiver
from s3slower.aggregator.otlp import DURATION

pytestmark = pytest.mark.e2e
PAIRS = 3                         # PutObject + GetObject each, after the CreateBucket


def _wall_us(ts: str) -> int:
    t = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def _traced(tmp_path, moto, args: list[str]) -> tuple[Tracer, GatedClient]:
    client = GatedClient(moto.url, f"otlp-{uuid.uuid4().hex[:8]}")
    try:
        return Tracer(tmp_path, ["--pid", str(client.pid), "--otlp", *args]), client
    except BaseException:
        client.close()
        raise


def _summary(tracer: Tracer) -> dict:
    tag = "s3slower aggregator stopped: "
    line = [ln for ln in tracer.err_path.read_text().splitlines() if ln.startswith(tag)][-1]
    return json.loads(line[len(tag):])


@pytest.mark.parametrize("receiver_cls", [HttpReceiver, GrpcReceiver], ids=["http", "grpc"])
def test_each_request_is_a_span_and_a_histogram_count(tmp_path, moto_http, receiver_cls):
    need_root_bpf()
    receiver = receiver_cls()
    protocol = "grpc" if receiver_cls is GrpcReceiver else "http/protobuf"
    tracer, client = _traced(tmp_path, moto_http, ["--otlp-endpoint", receiver.url,
                                                   "--otlp-protocol", protocol,
                                                   "--otlp-object-key"])
    try:
        n = client.burst(PAIRS)["requests"]
        records = tracer.wait_records([client.pid], n)
    finally:
        client.close()
        tracer.stop()                 # the exporters send what is left, the histogram last
        receiver.close()
    assert len(records) == n == 1 + 2 * PAIRS
    spans = receiver.spans()
    assert len(spans) == n, spans
    port = int(moto_http.url.rsplit(":", 1)[1])
    for r, s in zip(sorted(records, key=lambda r: r["timestamp"]),
                    sorted(spans, key=lambda s: s["start"])):
        where = (r, s)
        assert s["start"] // 1000 == _wall_us(r["timestamp"]), where
        assert abs((s["end"] - s["start"]) / 1e6 - r["latency_ms"]) < 0.001, where
        assert [(name, round((t - s["start"]) / 1e6, 3)) for name, t in s["events"]] \
            == [("ttfb", r["ttfb_ms"])], where
        assert s["name"] == f"S3.{r['operation']}" and s["kind"] == 3, where   # CLIENT
        assert s["attributes"] == {
            "rpc.system": "aws-api", "rpc.service": "S3", "rpc.method": r["operation"],
            "aws.s3.bucket": r["bucket"], **({"aws.s3.key": r["key"]} if r["key"] else {}),
            "http.request.method": r["method"], "http.response.status_code": r["status_code"],
            "server.address": "127.0.0.1", "server.port": port, "host.name": r["hostname"],
            "process.pid": r["pid"], "thread.id": r["tid"],
            "process.executable.name": r["comm"],
            "http.request.body.size": r["request_size"],
            "http.response.body.size": r["response_size"],
            **({"aws.request_id": r["request_id"]} if r["request_id"] else {})}, where
        assert s["status"] == 0, where                                       # no error
    points = receiver.points(DURATION)
    by_op: dict[str, list[float]] = {}
    for r in records:
        by_op.setdefault(r["operation"], []).append(r["latency_ms"] / 1000)
    assert {dict(k)["rpc.method"]: v[0] for k, v in points.items()} \
        == {op: len(v) for op, v in by_op.items()}
    for key, (count, total, buckets, _, unit, _) in points.items():
        attrs = dict(key)
        assert unit == "s" and sum(buckets) == count
        assert total == pytest.approx(sum(by_op[attrs["rpc.method"]]), abs=1e-5)
        assert "aws.s3.key" not in attrs and attrs["http.response.status_code"] == 200
    assert _summary(tracer)["lost"]["otlp"] == 0


@pytest.mark.parametrize("hung", [True, False], ids=["hung", "down"])
def test_a_receiver_hung_or_down_blocks_nothing_and_every_drop_is_counted(moto_http, hung):
    """hung: takes each export and answers none; down: nothing listens."""
    need_root_bpf()
    with readable_dir("s3slower-otlp-") as d:          # the aggregator re-reads the file
        (d / "s3slower.yaml").write_text("otlp: {max_queued_spans: 8, metrics: false}\n")
        receiver = HttpReceiver()
        receiver.hold()
        url = receiver.url if hung else f"http://127.0.0.1:{free_port()}"
        prom = free_port()
        tracer, client = _traced(d, moto_http, [
            "-C", str(d / "s3slower.yaml"), "--otlp-endpoint", url,
            "--prometheus", "-p", str(prom), "--host", "127.0.0.1"])
        try:
            n = client.burst(20)["requests"]
            records = tracer.wait_records([client.pid], n, timeout=30)
            if hung:
                assert receiver.held >= 1, "an export is still waiting for the receiver"
            # at most 8 spans under way, none acknowledged: the rest counted at once
            wait_until(lambda: _lost_metric(prom) >= n - 8, 20, "the drops in /metrics")
        finally:
            client.close()
            tracer.stop()
            receiver.close()
        summary = _summary(tracer)
    assert len(records) == n == 41
    assert summary["lost"]["otlp"] == n                # none acknowledged: all given up on


def _lost_metric(port: int) -> float:
    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith('s3slower_events_lost_total{source="otlp"}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no s3slower_events_lost_total{source=\"otlp\"} in /metrics")
