"""A steady rate for minutes: memory stays flat over time.

`s3slower run` (trace everything) while one client holds 100 requests/s for
S3SLOWER_SOAK_S seconds (default 120; --quick: 20) over 4 keep-alive
connections to bench/s3server.py, each replaced every 200 requests (churn).
Both processes' anonymous memory (RssAnon: heap and Python objects; VmRSS
also counts the ring buffer's mapping and libraries as they page in) is
sampled every 2 s.  tests/test_reliability.py checks the same flatness per
request count; this is the time-based soak:

* the rate held: requests sent / (rate x seconds), target 1.0 (all sent in
  the time allowed: seconds + 30);
* every request recorded (target: all);
* growth of each process's anonymous memory from the second fifth of the run
  to the last fifth (medians), target <= 3 % or 3 MB, whichever is larger.

    python -m bench soak
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.harness import BenchError, Figure, aggregator_pid, log, median, rss_mb, wait_for
from bench.shortlived import JsonTracer, S3Servers

RATE = 100
SECONDS = float(os.environ.get("S3SLOWER_SOAK_S", "120"))
SAMPLE_S = 2.0

CLIENT = r"""
import socket, sys, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
def conn():
    return socket.create_connection(("127.0.0.1", port))
conns = [conn() for _ in range(4)]
t0 = time.monotonic()
n = 0
while n < rate * seconds and time.monotonic() - t0 < seconds + 30:
    i = n % 4
    if n % 200 == i:
        conns[i].close()
        conns[i] = conn()
    c = conns[i]
    c.sendall(b"GET /bucket/soak-%d-64 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % n)
    buf = b""
    while not (b"\r\n\r\n" in buf and len(buf.split(b"\r\n\r\n", 1)[1]) >= 64):
        buf += c.recv(4096)
    n += 1
    due = t0 + n / rate
    if due > time.monotonic():
        time.sleep(due - time.monotonic())
print(n, flush=True)
"""


def growth(samples: list[float]) -> tuple[float, float]:
    k = max(len(samples) // 5, 1)
    return median(samples[k:2 * k]), median(samples[-k:])


def run(quick: bool = False) -> list[Figure]:
    seconds = 20.0 if quick else SECONDS
    srv = S3Servers()
    t = None
    try:
        t = JsonTracer([], "soak")
        agg = aggregator_pid(t.proc.pid)
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(srv.http), str(RATE),
                                   str(seconds)], stdout=subprocess.PIPE, text=True)
        col_mb, agg_mb = [], []
        t0 = time.monotonic()
        while client.poll() is None and time.monotonic() - t0 < seconds + 60:
            col_mb.append(rss_mb(t.proc.pid, "RssAnon"))
            agg_mb.append(rss_mb(agg, "RssAnon"))
            time.sleep(SAMPLE_S)
        if client.poll() is None:
            client.kill()
            raise BenchError("the soak client did not finish")
        sent = int(client.stdout.read().strip() or 0)
        try:
            wait_for(lambda: t.pids_recorded({client.pid}).get(client.pid, 0) >= sent, 30,
                     "every soak request recorded")
        except BenchError:
            pass
        recorded = t.pids_recorded({client.pid}).get(client.pid, 0)
    finally:
        if t is not None:
            t.close()
        srv.close()
    wanted = int(RATE * seconds)
    log(f"soak: {sent:,} of {wanted:,} requests sent, {recorded:,} records; anon MB "
        f"collector {col_mb}, aggregator {agg_mb}")
    figures = [
        Figure(f"soak: {RATE} req/s for {seconds:g} s, share sent", sent / wanted, "",
               "1.0", sent == wanted),
        Figure("soak: of the requests sent, recorded", recorded / max(sent, 1) * 100, "%",
               "100 %", recorded == sent),
    ]
    for name, xs in (("collector", col_mb), ("aggregator", agg_mb)):
        early, late = growth(xs)
        figures.append(Figure(f"soak: {name} anonymous memory growth, 2nd to last fifth",
                              late - early, "MB", "<= 3 % or 3 MB",
                              late - early <= max(0.03 * early, 3.0),
                              note=f"{early:.1f} -> {late:.1f} MB over {len(xs)} samples"))
    return figures
