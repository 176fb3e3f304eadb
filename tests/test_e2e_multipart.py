"""Multipart uploads end to end, as root: real BPF, real moto over HTTP and
HTTPS, real boto3 and the AWS CLI.

Each upload comes out as one `"kind": "multipart_upload"` line (aggregator/
multipart.py) whose upload id is the one botocore parsed from
CreateMultipartUpload's answer (so the kernel copied that small 2xx body),
whose parts, bytes and part sizes are what the client sent, and whose
duration spans the upload's own request records; the metrics count it by
result.  The tracer's multipart_idle_s is set small so an upload left alone
is reported `abandoned` while the test waits.

moto closes every connection after its answer; S3 keeps them open, so one
test runs against the bench's keep-alive server (bench/s3server.py) too.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import (ROOT, S3_ENV, VENV_BIN, Server, Tracer, free_port, need_root_bpf,
                      run_client, wait_until)
from tls_fixtures import marker_arrives

pytestmark = pytest.mark.e2e
CLIENT = Path(__file__).parent / "clients" / "boto3_multipart.py"
MIB = 1 << 20
SIZE = 5 * 5 * MIB + MIB                # six parts of 5 MiB chunks: the last one 1 MiB
IDLE_S = 3
MP_OPS = ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload",
          "AbortMultipartUpload")


@pytest.fixture(scope="module")
def tracer(tmp_path_factory):
    need_root_bpf()
    tmp = tmp_path_factory.mktemp("multipart")
    config = tmp / "s3slower.yaml"
    config.write_text(f"multipart_idle_s: {IDLE_S}\n")
    port = free_port()
    t = Tracer(tmp, ["-C", str(config), "--prometheus", "-p", str(port), "--host", "127.0.0.1"])
    t.port = port
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture(scope="module")
def body(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("body") / "body.bin"
    with open(path, "wb") as f:
        f.write(uuid.uuid4().bytes * (SIZE // 16))
    return path


@pytest.fixture(params=["http", "https"])
def server(request, moto_http, moto_https):
    return moto_http if request.param == "http" else moto_https


@pytest.fixture(scope="module")
def keepalive_tls(tls_cert):
    cert, key = tls_cert
    proc = subprocess.Popen([sys.executable, "-m", "bench.s3server", "--port", "0", "--cert",
                             str(cert), "--key", str(key)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        port = int(proc.stdout.readline().split()[1])
        yield Server(proc, f"https://127.0.0.1:{port}", cert)
    finally:
        proc.terminate()
        proc.wait(10)


def uploads(tracer, pid: int) -> list[dict]:
    return [d for d in tracer.lines() if d.get("kind") == "multipart_upload" and d["pid"] == pid]


def the_upload(tracer, pid: int, timeout: float = 30) -> dict:
    """Its one line (the marker shows nothing more of pid's is on its way)."""
    wait_until(lambda: uploads(tracer, pid), timeout, f"a multipart_upload line of pid {pid}")
    marker_arrives(tracer)
    lines = uploads(tracer, pid)
    assert len(lines) == 1, lines
    return lines[0]


def boto3_client(server, bucket: str, mode: str, body: Path) -> dict:
    args = [sys.executable, str(CLIENT), server.url, bucket, mode, str(body)]
    if server.ca:
        args.append(str(server.ca))
    return json.loads(run_client(args).stdout)


def _ns(timestamp: str) -> int:
    t = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def check_span(tracer, line: dict) -> None:
    """duration_ms: its first request's start to its last response's end."""
    recs = [r for r in tracer.records_for({line["pid"]})
            if r["operation"] in MP_OPS and r["key"] == line["key"]]
    first = min(_ns(r["timestamp"]) for r in recs)
    last = max(_ns(r["timestamp"]) + r["latency_ms"] * 1e6 for r in recs)
    assert line["timestamp"] == min(r["timestamp"] for r in recs)
    assert abs(line["duration_ms"] - (last - first) / 1e6) < 0.01, (line, recs)


def check_parts(line: dict, parts: int, size: int) -> None:
    assert (line["parts"], line["bytes"]) == (parts, size), line
    assert (line["part_size_min"], line["part_size_max"]) == \
        (size - (parts - 1) * 5 * MIB, 5 * MIB), line


def metric(tracer, name: str, **labels) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{tracer.port}/metrics", timeout=10).read()
    total = 0.0
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                assert "upload_id" not in s.labels
                total += s.value
    return total


def test_boto3_upload_file_in_parallel_parts_completes(tracer, server, body):
    bucket = "mp-" + uuid.uuid4().hex[:8]
    out = boto3_client(server, bucket, "upload", body)
    line = the_upload(tracer, out["pid"])
    assert line["result"] == "completed"
    assert line["upload_id"] == out["upload_ids"][0]
    assert (line["bucket"], line["key"]) == (bucket, "big/object.bin")
    assert line["endpoint"] == server.url.split("://")[1] and line["comm"]
    check_parts(line, 6, SIZE)
    assert 1 <= line["max_parts_in_flight"] <= 4, line     # max_concurrency=4
    parts = [r for r in tracer.records_for({out["pid"]}) if r["operation"] == "UploadPart"]
    assert sorted(r["request_size"] for r in parts) == [MIB] + [5 * MIB] * 5
    check_span(tracer, line)
    assert metric(tracer, "s3slower_multipart_uploads_total", bucket=bucket,
                  result="completed") == 1
    assert metric(tracer, "s3slower_multipart_upload_duration_ms_count", bucket=bucket) == 1
    assert metric(tracer, "s3slower_multipart_upload_duration_ms_sum", bucket=bucket) == \
        pytest.approx(line["duration_ms"], abs=0.001)


def test_uploads_on_connections_kept_alive(tracer, keepalive_tls, body):
    """boto3 over TLS sends its parts aws-chunked (Transfer-Encoding: chunked),
    after which the kernel no longer frames that connection's egress; the
    second upload's CreateMultipartUpload goes out on such a connection, and
    its answer (the UploadId) must still be copied."""
    out = boto3_client(keepalive_tls, "keepalive", "twice", body)
    pid = out["pid"]
    wait_until(lambda: len(uploads(tracer, pid)) >= 2, 30, "two multipart_upload lines")
    marker_arrives(tracer)
    lines = sorted(uploads(tracer, pid), key=lambda d: d["timestamp"])
    assert [(d["key"], d["upload_id"], d["result"]) for d in lines] == \
        [("big/one.bin", "UPLOAD-one.bin", "completed"),
         ("big/two.bin", "UPLOAD-two.bin", "completed")]
    assert out["upload_ids"] == ["UPLOAD-one.bin", "UPLOAD-two.bin"]
    for line in lines:
        check_parts(line, 6, SIZE)
        check_span(tracer, line)        # from its CreateMultipartUpload on


def test_an_aborted_upload(tracer, server, body):
    bucket = "mpa-" + uuid.uuid4().hex[:8]
    out = boto3_client(server, bucket, "abort", body)
    line = the_upload(tracer, out["pid"])
    assert (line["result"], line["upload_id"]) == ("aborted", out["upload_ids"][0])
    check_parts(line, 2, 10 * MIB)
    assert line["max_parts_in_flight"] == 1        # one part after the other
    check_span(tracer, line)
    assert metric(tracer, "s3slower_multipart_uploads_total", bucket=bucket,
                  result="aborted") == 1
    assert metric(tracer, "s3slower_multipart_upload_duration_ms_count", bucket=bucket) == 0


def test_an_upload_left_alone_is_abandoned(tracer, server, body):
    bucket = "mpi-" + uuid.uuid4().hex[:8]
    out = boto3_client(server, bucket, "idle", body)
    line = the_upload(tracer, out["pid"], timeout=IDLE_S + 30)
    assert (line["result"], line["upload_id"]) == ("abandoned", out["upload_ids"][0])
    check_parts(line, 1, 5 * MIB)
    check_span(tracer, line)
    assert metric(tracer, "s3slower_multipart_uploads_total", bucket=bucket,
                  result="abandoned") == 1


def test_aws_cli_cp_of_a_large_file(tracer, server, body, tmp_path):
    bucket = "mpcli-" + uuid.uuid4().hex[:8]
    config = tmp_path / "aws.config"
    config.write_text("[default]\ns3 =\n  multipart_threshold = 5MB\n"
                      "  multipart_chunksize = 5MB\n")
    base = [str(VENV_BIN / "aws"), "--endpoint-url", server.url]
    if server.ca:
        base += ["--ca-bundle", str(server.ca)]
    env = {"AWS_CONFIG_FILE": str(config)}
    run_client(base + ["s3api", "create-bucket", "--bucket", bucket], env)
    cp = subprocess.Popen(base + ["s3", "cp", str(body), f"s3://{bucket}/cli/object.bin"],
                          env=dict(os.environ, **S3_ENV, **env), stdout=subprocess.DEVNULL)
    assert cp.wait(120) == 0
    line = the_upload(tracer, cp.pid)
    assert (line["result"], line["bucket"], line["key"]) == \
        ("completed", bucket, "cli/object.bin")
    check_parts(line, 6, SIZE)
    check_span(tracer, line)

