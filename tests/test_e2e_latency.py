"""End to end latency: a slow proxy on loopback in front of moto delays chosen
requests by a known amount; a real boto3 client, the real BPF collector, the
aggregator pipeline.  Reported latency is within LATENCY_SLACK_MS above the
injected delay and never above what the client measured around its call; for
a large GET whose first byte is held D1 and whose body is then spread over D2,
ttfb ≈ D1 and latency ≈ D1 + D2.

The proxy runs in its own process (no GIL shared with the collector thread),
holds each matching response until `arrival of the request head + D1`, then
sends the body in THROTTLE_SLICES pieces evenly over D2.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import S3_ENV, need_root_bpf, wait_port

pytestmark = pytest.mark.e2e
LATENCY_SLACK_MS = 5.0
THROTTLE_SLICES = 10
BIG = 2_000_000
# path substring -> (D1 ms before the first response byte, D2 ms of body)
RULES = {"/slow-get": (150, 0), "/slow-head": (100, 0), "/big-throttled": (100, 300)}

PROXY = r'''
import json, socket, sys, threading, time
upstream, rules, slices = int(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)

def read_head(s, buf=b""):
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None, buf
        buf += d
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]

def length(head):
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0

def until(t):
    while (left := t - time.monotonic()) > 0:
        time.sleep(left)

def handle(c):
    with c:
        head, rest = read_head(c)
        if head is None:
            return
        arrival = time.monotonic()
        method, path = head.split(b" ")[0], head.split(b" ")[1].decode()
        rule = next((v for k, v in rules.items() if k in path), None)
        lines = head.split(b"\r\n")
        expect = [l for l in lines if l.lower().startswith(b"expect:")]
        if expect:     # answer 100-continue here; upstream sees a plain request
            head = b"\r\n".join(l for l in lines if l not in expect)
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        with socket.create_connection(("127.0.0.1", upstream)) as u:
            u.sendall(head + rest)
            need = length(head) - len(rest)
            while need > 0:
                d = c.recv(65536)
                if not d:
                    return
                u.sendall(d)
                need -= len(d)
            rhead, body = read_head(u)
            want = 0 if method == b"HEAD" else length(rhead)
            while len(body) < want:
                d = u.recv(65536)
                if not d:
                    break
                body += d
        if rule is None:
            c.sendall(rhead + body)
            return
        d1, d2 = rule[0] / 1000, rule[1] / 1000
        n = slices if d2 and body else 1
        step = -(-len(body) // n) if body else 0
        until(arrival + d1)
        c.sendall(rhead + body[:step])
        for k in range(1, n):
            until(arrival + d1 + d2 * k / (n - 1))
            c.sendall(body[k * step:(k + 1) * step])

while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
'''

CLIENT = r'''
import json, os, sys, time, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1],
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}))
print(json.dumps({"pid": os.getpid()}), flush=True)
sys.stdin.readline()
calls = []
def timed(name, fn):
    t = time.perf_counter()
    fn()
    calls.append({"key": name, "ms": (time.perf_counter() - t) * 1000})
s3.create_bucket(Bucket="lat")
s3.put_object(Bucket="lat", Key="slow-get", Body=b"a" * 1000)
s3.put_object(Bucket="lat", Key="slow-head", Body=b"b" * 10)
s3.put_object(Bucket="lat", Key="big-throttled", Body=b"c" * int(sys.argv[2]))
for _ in range(3):
    timed("slow-get", lambda: s3.get_object(Bucket="lat", Key="slow-get")["Body"].read())
    timed("slow-head", lambda: s3.head_object(Bucket="lat", Key="slow-head"))
    timed("big-throttled", lambda: s3.get_object(Bucket="lat", Key="big-throttled")["Body"].read())
print(json.dumps({"calls": calls}), flush=True)
'''


def _line(proc: subprocess.Popen, timeout: float) -> str:
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not got or not got[0]:
        raise TimeoutError(f"no line from pid {proc.pid} after {timeout}s")
    return got[0]


@pytest.fixture
def slow_proxy(moto_http):
    upstream = int(moto_http.url.rsplit(":", 1)[1])
    proc = subprocess.Popen([sys.executable, "-c", PROXY, str(upstream), json.dumps(RULES),
                             str(THROTTLE_SLICES)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(_line(proc, 20))
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)


def test_injected_delay_is_what_is_reported(slow_proxy):
    need_root_bpf()
    import zmq

    from s3slower.aggregator.pipeline import Pipeline
    from s3slower.collector import hostprep
    from s3slower.collector.probes import ProgramOptions, Probes
    from s3slower.collector.publisher import Publisher
    from s3slower.collector.service import Collector
    from s3slower.common import protocol
    from s3slower.common.targets import Selection

    hostprep.prepare()
    client = subprocess.Popen([sys.executable, "-c", CLIENT, slow_proxy, str(BIG)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, **S3_ENV))
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind("inproc://latency")
    pub = Publisher(ctx, "inproc://latency", bind=False, hostname="t",
                    wall_offset_ns=time.time_ns() - time.monotonic_ns())
    col = None
    stop, ready = threading.Event(), threading.Event()
    try:
        pid = json.loads(_line(client, 60))["pid"]
        opts = ProgramOptions(trace_all=False, self_pid=os.getpid())
        col = Collector(lambda cb: Probes(opts, cb), pub, Selection.build(pids=(pid,)))
        th = threading.Thread(target=col.run, args=(stop.is_set, ready.set), daemon=True)
        th.start()
        assert ready.wait(60), "collector not ready"
        client.stdin.write("go\n")
        client.stdin.flush()
        calls = json.loads(_line(client, 120))["calls"]
        pipeline = Pipeline()
        records = []
        deadline = time.monotonic() + 15
        wanted = {"slow-get": 3, "slow-head": 3, "big-throttled": 3}
        while time.monotonic() < deadline:
            if pull.poll(100):
                msg = protocol.decode(pull.recv())
                records += [r for r in pipeline.handle(msg, time.time_ns()) if r.pid == pid]
            have = {k: sum(1 for r in records if r.key == k and r.method in ("GET", "HEAD")
                           and r.complete) for k in wanted}
            if all(have[k] >= n for k, n in wanted.items()):
                break
        else:
            pytest.fail(f"records missing: {[(r.operation, r.key) for r in records]}")
    finally:
        stop.set()
        if col is not None:
            th.join(20)
            col.probes.close()
        pub.close()
        pull.close()
        ctx.term()
        client.kill()
        client.wait(10)

    report = []
    for key in wanted:
        recs = [r for r in records if r.key == key and r.method in ("GET", "HEAD")]
        measured = [c["ms"] for c in calls if c["key"] == key]
        d1, d2 = RULES["/" + key]
        for rec, client_ms in zip(recs, measured):
            lat, ttfb = rec.latency_ns / 1e6, rec.ttfb_ns / 1e6
            report.append((key, d1 + d2, round(ttfb, 2), round(lat, 2), round(client_ms, 2)))
            where = f"{key}: injected {d1}+{d2} ms, ttfb {ttfb:.2f}, latency {lat:.2f}, client {client_ms:.2f}"
            assert rec.complete and rec.status_code == 200, where
            assert d1 + d2 <= lat <= d1 + d2 + LATENCY_SLACK_MS, where
            assert lat <= client_ms, where
            assert d1 <= ttfb <= d1 + LATENCY_SLACK_MS, where
            if d2:
                assert lat - ttfb >= d2 * (THROTTLE_SLICES - 2) / (THROTTLE_SLICES - 1), where
                assert rec.response_size == BIG, where
    print("\n(key, injected ms, ttfb ms, latency ms, client ms)\n" + "\n".join(map(str, report)))
