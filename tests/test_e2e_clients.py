"""End to end, as root: real BPF, real moto over HTTP and HTTPS, real clients.

Every request a client makes appears exactly once, with the client's pid, the
right operation, bucket, key, status and body sizes, and a latency no larger
than what the client measured around the call.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import VENV_BIN, run_client  # noqa: E402
from tls_fixtures import marker_arrives

pytestmark = pytest.mark.e2e
CLIENTS = Path(__file__).parent / "clients"
BODY_SIZE = 200_000


@dataclass
class Call:
    pid: int
    op: str
    bucket: str
    key: str
    status: int
    request_size: int | None
    response_size: int | None     # None: only checked to be > 0
    ms: float
    error_code: str = ""


def check(tracer, calls: list[Call], tls: str) -> None:
    pids = {c.pid for c in calls}
    tracer.wait_records(pids, len(calls))
    marker_arrives(tracer)   # the clients have exited: anything extra of theirs is out by now
    recs = sorted(tracer.records_for(pids), key=lambda r: r["timestamp"])
    got = [(r["pid"], r["operation"], r["bucket"], r["key"], r["status_code"]) for r in recs]
    want = [(c.pid, c.op, c.bucket, c.key, c.status) for c in calls]
    assert got == want
    for r, c in zip(recs, calls):
        where = f"{c.op} {c.key}: {r}"
        assert r["complete"], where
        assert r["tls"] == tls, where
        assert r["latency_ms"] <= c.ms, where
        assert 0 < r["ttfb_ms"] <= r["latency_ms"], where
        if c.request_size is not None:
            assert r["request_size"] == c.request_size, where
        if c.response_size is None:
            assert r["response_size"] > 0, where
        else:
            assert r["response_size"] == c.response_size, where
        assert r["is_error"] == (c.status >= 400), where
        assert r["error_code"] == c.error_code, where
        assert r["comm"] and r["hostname"] and r["endpoint"], where


def expected(pid_of, bucket: str, timings: list[float]) -> list[Call]:
    key = "dir/obj 1.bin"
    rows = [
        ("CreateBucket", "", 200, 0, 0),
        ("PutObject", key, 200, BODY_SIZE, 0),
        ("GetObject", key, 200, 0, BODY_SIZE),
        ("HeadObject", key, 200, 0, 0),
        ("ListObjectsV2", "", 200, 0, None),
        ("GetObject", "missing", 404, 0, None),
        ("DeleteObject", key, 204, 0, 0),
        ("DeleteBucket", "", 204, 0, 0),
    ]
    calls = []
    for i, (op, k, status, req, resp) in enumerate(rows):
        calls.append(Call(pid_of(i), op, bucket, k, status, req, resp, timings[i],
                          "NoSuchKey" if status == 404 else ""))
    return calls


@pytest.fixture(params=["http", "https"])
def server(request, moto_http, moto_https):
    return moto_http if request.param == "http" else moto_https


def test_boto3_one_process(tracer, server):
    bucket = "boto-" + uuid.uuid4().hex[:8]
    args = [sys.executable, str(CLIENTS / "boto3_ops.py"), server.url, bucket]
    if server.ca:
        args.append(str(server.ca))
    out = json.loads(run_client(args).stdout)
    calls = expected(lambda i: out["pid"], bucket, [c["ms"] for c in out["calls"]])
    assert [c["status"] for c in out["calls"]] == [c.status for c in calls]
    check(tracer, calls, "openssl" if server.ca else "none")


def _timed(args, env=None) -> tuple[int, float, subprocess.CompletedProcess]:
    full_env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                    AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    t = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                         text=True)
    out, err = p.communicate(timeout=120)
    ms = (time.perf_counter() - t) * 1000
    return p.pid, ms, subprocess.CompletedProcess(args, p.returncode, out, err)


def test_aws_cli_process_per_command(tracer, server, tmp_path):
    bucket = "cli-" + uuid.uuid4().hex[:8]
    body = tmp_path / "body.bin"
    body.write_bytes(os.urandom(BODY_SIZE))
    key = "dir/obj 1.bin"
    base = [str(VENV_BIN / "aws"), "--endpoint-url", server.url]
    if server.ca:
        base += ["--ca-bundle", str(server.ca)]
    api = base + ["s3api"]
    commands = [
        api + ["create-bucket", "--bucket", bucket],
        api + ["put-object", "--bucket", bucket, "--key", key, "--body", str(body)],
        api + ["get-object", "--bucket", bucket, "--key", key, str(tmp_path / "out.bin")],
        api + ["head-object", "--bucket", bucket, "--key", key],
        api + ["list-objects-v2", "--bucket", bucket],
        api + ["get-object", "--bucket", bucket, "--key", "missing", str(tmp_path / "no")],
        api + ["delete-object", "--bucket", bucket, "--key", key],
        api + ["delete-bucket", "--bucket", bucket],
    ]
    pids, timings = [], []
    for i, cmd in enumerate(commands):
        pid, ms, res = _timed(cmd)
        assert (res.returncode == 0) == (i != 5), res.stderr
        pids.append(pid)
        timings.append(ms)
    assert (tmp_path / "out.bin").read_bytes() == body.read_bytes()
    check(tracer, expected(lambda i: pids[i], bucket, timings), "openssl" if server.ca else "none")


def test_curl_sigv4(tracer, server, tmp_path):
    bucket = "curl-" + uuid.uuid4().hex[:8]
    body = tmp_path / "body.bin"
    body.write_bytes(os.urandom(BODY_SIZE))
    key_url = "dir/obj%201.bin"
    base = ["curl", "-sS", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "testing:testing",
            "-o", str(tmp_path / "out"), "-w", "%{http_code}"]
    if server.ca:
        base += ["--cacert", str(server.ca)]
    u = f"{server.url}/{bucket}"
    commands = [
        base + ["-X", "PUT", u],
        base + ["-T", str(body), f"{u}/{key_url}"],
        base + [f"{u}/{key_url}"],
        base + ["-I", f"{u}/{key_url}"],
        base + [f"{u}?list-type=2"],
        base + [f"{u}/missing"],
        base + ["-X", "DELETE", f"{u}/{key_url}"],
        base + ["-X", "DELETE", u],
    ]
    pids, timings = [], []
    for cmd in commands:
        pid, ms, res = _timed(cmd)
        assert res.returncode == 0, res.stderr
        pids.append(pid)
        timings.append(ms)
    calls = expected(lambda i: pids[i], bucket, timings)
    check(tracer, calls, "openssl" if server.ca else "none")
