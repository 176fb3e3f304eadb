"""A known delay, injected: a slow proxy on loopback in front of an S3 server
delays chosen responses; a real boto3 client goes through it while the real
BPF collector (in this process) traces only that client, and the aggregator
pipeline turns what it publishes into records.

Used by tests/test_e2e_latency.py (what must hold on any machine: bounds that
follow from cause and effect) and by `python -m bench latency` (how close to
the injected delay the reported figures are on this one).

The proxy runs in its own process (no GIL shared with the collector thread),
holds each matching response until `arrival of the request head + D1`, then
sends the body in THROTTLE_SLICES pieces evenly over D2.  It serves one
request per connection and says so (Connection: close).  Needs root and BCC.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterator

THROTTLE_SLICES = 10
BIG = 2_000_000
# key -> (D1 ms before the first response byte, D2 ms of body); the proxy
# matches "/" + the key's name up to its size suffix ("-N", for bench/s3server)
RULES = {"slow-get": (150, 0), "slow-head": (100, 0), "big-throttled": (100, 300)}
KEYS = {"slow-get": "slow-get", "slow-head": "slow-head", "big-throttled": f"big-throttled-{BIG}"}
RECORDS_TIMEOUT_S = 60      # generous: the records are out well within a second
READY_TIMEOUT_S = 60
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
          "NO_PROXY": "*"}

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
        rule = next((v for k, v in rules.items() if "/" + k in path), None)
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
            # one request per connection here: say so, whatever upstream said
            rhead = b"\r\n".join([l for l in rhead[:-4].split(b"\r\n")
                                   if not l.lower().startswith(b"connection:")]
                                  + [b"Connection: close"]) + b"\r\n\r\n"
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

# Per call: "ms" around the whole call, "head_ms" until boto3 had the
# response head (get_object returns before the body is read; head_object is
# all head).  Both run from before the request's first byte is written.
CLIENT = r'''
import json, os, sys, time, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1],
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}))
keys, big, rounds = json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(json.dumps({"pid": os.getpid()}), flush=True)
sys.stdin.readline()
calls = []
def get(name):
    t = time.perf_counter()
    body = s3.get_object(Bucket="lat", Key=keys[name])["Body"]
    head = time.perf_counter()
    body.read()
    calls.append({"key": name, "ms": (time.perf_counter() - t) * 1000,
                  "head_ms": (head - t) * 1000})
def head(name):
    t = time.perf_counter()
    s3.head_object(Bucket="lat", Key=keys[name])
    ms = (time.perf_counter() - t) * 1000
    calls.append({"key": name, "ms": ms, "head_ms": ms})
s3.create_bucket(Bucket="lat")
s3.put_object(Bucket="lat", Key=keys["slow-get"], Body=b"a" * 1000)
s3.put_object(Bucket="lat", Key=keys["slow-head"], Body=b"b" * 10)
s3.put_object(Bucket="lat", Key=keys["big-throttled"], Body=b"c" * big)
for _ in range(rounds):
    get("slow-get")
    head("slow-head")
    get("big-throttled")
print(json.dumps({"calls": calls}), flush=True)
'''


@dataclass(frozen=True)
class Sample:
    """One delayed call: what was injected, what the tracer and the client saw."""
    key: str
    d1_ms: float
    d2_ms: float
    ttfb_ms: float
    latency_ms: float
    client_ms: float
    client_head_ms: float
    complete: bool
    status_code: int
    response_size: int


def _line(proc: subprocess.Popen, timeout: float) -> str:
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not got or not got[0]:
        raise TimeoutError(f"no line from pid {proc.pid} after {timeout}s")
    return got[0]


@contextlib.contextmanager
def slow_proxy(upstream_port: int) -> Iterator[str]:
    """The proxy in front of 127.0.0.1:upstream_port; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-c", PROXY, str(upstream_port),
                             json.dumps(RULES), str(THROTTLE_SLICES)],
                            stdout=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{int(_line(proc, 20))}"
    finally:
        proc.kill()
        proc.wait(10)


def traced_samples(proxy_url: str, rounds: int = 3) -> list[Sample]:
    """Run the client through the proxy under the real collector; one Sample per
    delayed call, in call order.  Raises TimeoutError when records are missing."""
    import zmq

    from s3slower.aggregator.pipeline import Pipeline
    from s3slower.collector import hostprep
    from s3slower.collector.probes import ProgramOptions, Probes
    from s3slower.collector.publisher import Publisher
    from s3slower.collector.service import Collector
    from s3slower.common import protocol
    from s3slower.common.targets import Selection

    hostprep.prepare()
    client = subprocess.Popen([sys.executable, "-c", CLIENT, proxy_url, json.dumps(KEYS),
                               str(BIG), str(rounds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, **S3_ENV))
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    endpoint = f"inproc://latency-{os.getpid()}-{time.monotonic_ns()}"
    pull.bind(endpoint)
    pub = Publisher(ctx, endpoint, bind=False, hostname="t",
                    wall_offset_ns=time.time_ns() - time.monotonic_ns())
    col = th = None
    stop, ready = threading.Event(), threading.Event()
    by_key = {name: [] for name in KEYS}
    try:
        pid = json.loads(_line(client, 60))["pid"]
        opts = ProgramOptions(trace_all=False, self_pid=os.getpid())
        col = Collector(lambda cb: Probes(opts, cb), pub, Selection.build(pids=(pid,)))
        th = threading.Thread(target=col.run, args=(stop.is_set, ready.set), daemon=True)
        th.start()
        if not ready.wait(READY_TIMEOUT_S):
            raise TimeoutError("collector not ready")
        client.stdin.write("go\n")
        client.stdin.flush()
        calls = json.loads(_line(client, 120))["calls"]
        pipeline = Pipeline()
        name_of = {k: name for name, k in KEYS.items()}
        deadline = time.monotonic() + RECORDS_TIMEOUT_S
        while any(len(v) < rounds for v in by_key.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"records missing: { {k: len(v) for k, v in by_key.items()} }")
            if pull.poll(100):
                msg = protocol.decode(pull.recv())
                for r in pipeline.handle(msg, time.time_ns()):
                    if r.pid == pid and r.method in ("GET", "HEAD") and r.key in name_of:
                        by_key[name_of[r.key]].append(r)
    finally:
        stop.set()
        if th is not None:
            th.join(20)
        if col is not None:
            col.probes.close()
        pub.close()
        pull.close()
        ctx.term()
        client.kill()
        client.wait(10)
    out = []
    for name, recs in by_key.items():
        d1, d2 = RULES[name]
        mine = [c for c in calls if c["key"] == name]
        for rec, call in zip(sorted(recs, key=lambda r: r.start_wall_ns), mine):
            out.append(Sample(name, d1, d2, rec.ttfb_ns / 1e6, rec.latency_ns / 1e6,
                              call["ms"], call["head_ms"], rec.complete, rec.status_code,
                              rec.response_size))
    return out
