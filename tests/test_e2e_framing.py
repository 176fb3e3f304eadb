"""Bodies framed in the kernel: what the collector ships per request.

(moto's server, Werkzeug, answers a PUT's body with a second `100 Continue`;
that interim head is one record more, counted apart.)

A real boto3 client (HTTP and HTTPS, `Expect: 100-continue` on its PUTs, which
it reads a byte at a time) against moto; `s3slower collector --pid N
--record FILE` with a live aggregator.  The recording holds exactly what was
shipped: at most 4 kernel records per Content-Length exchange whatever the
object's size (request head, `100 Continue`, response head, end of body),
body bytes counted but not copied -- and the aggregator's records still carry
every byte of every request and response.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import S3_ENV, need_root_bpf, wait_until
from fleet import aggregator, collector
from s3slower.common import recording
from s3slower.common.events import Kind

pytestmark = pytest.mark.e2e

SIZES = (0, 4096, 1 << 20, 8 << 20)
# Bytes shipped per exchange beyond its heads (the bound): nothing of
# a counted body is copied.
BEYOND_HEADS = 2048
METHODS = (b"GET ", b"PUT ", b"HEAD ", b"POST ", b"DELETE ")

CLIENT = """
import boto3, json, os, sys
from botocore.config import Config
endpoint, bucket, ca = sys.argv[1], sys.argv[2], (sys.argv[3] or None)
s3 = boto3.client("s3", endpoint_url=endpoint, verify=ca,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}))
print(json.dumps({"pid": os.getpid()}), flush=True)
sys.stdin.readline()
s3.create_bucket(Bucket=bucket)
made = [("CreateBucket", "", 0, 0)]
for size in SIZES:
    body = os.urandom(size)
    s3.put_object(Bucket=bucket, Key=f"k{size}", Body=body)
    made.append(("PutObject", f"k{size}", size, 0))
    got = s3.get_object(Bucket=bucket, Key=f"k{size}")["Body"].read()
    assert got == body
    made.append(("GetObject", f"k{size}", 0, size))
    s3.head_object(Bucket=bucket, Key=f"k{size}")
    made.append(("HeadObject", f"k{size}", 0, 0))
print(json.dumps({"made": made}), flush=True)
""".replace("SIZES", repr(SIZES))


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_body_of_any_size_costs_one_record(scheme, moto_http, moto_https, tmp_path):
    need_root_bpf()
    server = moto_http if scheme == "http" else moto_https
    bucket = f"framing-{scheme}"
    client = subprocess.Popen([sys.executable, "-c", CLIENT, server.url, bucket,
                               str(server.ca or "")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=dict(S3_ENV))
    pid = json.loads(client.stdout.readline())["pid"]
    sock, rec = tmp_path / "c.sock", tmp_path / "c.rec"
    started = []
    try:
        started.append(collector(tmp_path, "collector", ["--bind", f"ipc://{sock}",
                                                         "--pid", str(pid), "--record", str(rec)]))
        live = aggregator(tmp_path, "aggregator", ["--connect", f"ipc://{sock}",
                                                   "--allow-root"])
        started.append(live)
        client.stdin.write("go\n")
        client.stdin.flush()
        made = json.loads(client.stdout.readline())["made"]
        assert client.wait(60) == 0
        wait_until(lambda: len([r for r in live.records() if r["pid"] == pid]) >= len(made),
                   60, f"{len(made)} records")
    finally:
        for p in started:
            p.stop()
        if client.poll() is None:
            client.kill()

    got = [(r["operation"], r["key"], r["request_size"], r["response_size"])
           for r in live.records() if r["pid"] == pid]
    assert got == [tuple(m) for m in made]
    assert all(r["complete"] and r["status_code"] < 300 for r in live.records()
               if r["pid"] == pid)

    with open(rec, "rb") as f:
        data = [ev for ev in recording.events(f) if ev.pid == pid and ev.kind == Kind.DATA]
    exchanges = _exchanges(data)
    assert len(exchanges) == len(made)
    assert sum(ev.length for ev in data) >= 2 * sum(SIZES)     # every body byte counted
    framed = [x for x in exchanges if not _chunked(x)]
    chunked = [x for x in exchanges if _chunked(x)]
    print(f"\n{scheme}: {len(framed)} Content-Length exchanges, "
          f"{sum(map(len, framed)) / len(framed):.2f} kernel records each, at most "
          f"{max(map(len, framed))}; {len(chunked)} chunked uploads, "
          + ", ".join(f"{len(x)} records for {sum(ev.length for ev in x)} bytes"
                      for x in chunked))
    repeated = 0
    for x in framed:
        beyond_heads = sum(len(ev.data) for ev in x if not _is_head(ev))
        extra = max(0, sum(ev.data.startswith(b"HTTP/1.1 100 ") for ev in x) - 1)
        repeated += extra
        assert len(x) - extra <= 4 and beyond_heads <= BEYOND_HEADS, \
            [(ev.length, ev.data[:20]) for ev in x]
    print(f"  ({repeated} exchanges got a second 100 Continue from the server, "
          "one record more each)")
    if scheme == "http":
        assert not chunked and len(framed) == len(made)


def _is_head(ev) -> bool:
    return ev.data.startswith((b"HTTP/1.", *METHODS))


def _exchanges(data) -> list[list]:
    """The records of each request, from its head to the next request's."""
    out: list[list] = []
    for ev in data:
        if ev.data.startswith(METHODS):
            out.append([])
        out[-1].append(ev)
    return out


def _chunked(exchange) -> bool:
    return b"transfer-encoding: chunked" in exchange[0].data.lower()
