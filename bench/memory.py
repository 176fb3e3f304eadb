"""Steady RSS of the collector and the aggregator under `s3slower run`.

Real traced traffic, from bench/s3bgen.c (`conns` mode) against its own
epoll server over loopback:
  A. 10,000 keep-alive connections open, one request/response done on each;
  B. then 1,000,000 more request/response pairs round-robin over those
     connections (paced; real syscalls, real BPF, real collector and
     aggregator), the 10,000 connections still open;
  C. after the client closed them all.
RSS is read from /proc/PID/status (median of samples over 3 s once settled).
Targets: aggregator <= 100 MB, collector <= 250 MB, and no growth from A to
B (allowed slack: 5 % or 5 MB, whichever is larger).

    python -m bench memory
"""
from __future__ import annotations

import subprocess
import time

from bench.harness import (BenchError, Figure, aggregator_pid, build_helper, expect_line, log,
                           median, rss_mb, tracer)

CONNS = 10_000
REQUESTS = 1_000_000
RATE = 20_000
AGG_TARGET_MB = 100
COL_TARGET_MB = 250
SETTLE_S = 3.0


def growth_ok(a: float, b: float) -> bool:
    return b - a <= max(0.05 * a, 5.0)


def steady(pids: dict[str, int]) -> dict[str, float]:
    time.sleep(SETTLE_S)
    samples: dict[str, list[float]] = {k: [] for k in pids}
    for _ in range(4):
        for k, pid in pids.items():
            samples[k].append(rss_mb(pid))
        time.sleep(SETTLE_S / 4)
    return {k: median(v) for k, v in samples.items()}


def run(quick: bool = False) -> list[Figure]:
    requests = REQUESTS // 5 if quick else REQUESTS
    exe = build_helper()
    with tracer([]) as t:
        agg = aggregator_pid(t.pid)
        pids = {"collector": t.pid, "aggregator": agg}
        idle = steady(pids)
        gen = subprocess.Popen([exe, "conns", str(CONNS)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        try:
            t0 = time.monotonic()
            expect_line(gen, "open", 120)
            log(f"memory: {CONNS:,} connections open in {time.monotonic() - t0:.1f}s")
            a = steady(pids)
            gen.stdin.write(f"run {RATE} {requests}\n")
            gen.stdin.flush()
            peak = dict(a)
            t0 = time.monotonic()
            deadline = t0 + requests / RATE * 3 + 60
            import selectors
            sel = selectors.DefaultSelector()
            sel.register(gen.stdout, selectors.EVENT_READ)
            done = ""
            while time.monotonic() < deadline and not done:
                if sel.select(1.0):
                    done = gen.stdout.readline()
                for k, pid in pids.items():
                    peak[k] = max(peak[k], rss_mb(pid))
            if not done.startswith("done"):
                raise BenchError("s3bgen did not finish its requests in time")
            sent, ns = (int(x.split("=")[1]) for x in done.split()[1:3])
            log(f"memory: {sent:,} requests in {ns / 1e9:.1f}s ({sent / (ns / 1e9):,.0f}/s)")
            b = steady(pids)
            gen.stdin.write("close\n")
            gen.stdin.flush()
            expect_line(gen, "closed", 60)
            c = steady(pids)
        finally:
            gen.kill()
            gen.wait(5)
    col_sum, agg_sum = t.summary("collector"), t.summary("aggregator")
    log(f"memory RSS MB idle {idle}, 10k open {a}, after {requests:,} requests {b}, "
        f"closed {c}, peak {peak}")
    log(f"memory: aggregator records {agg_sum.get('records')}, lost {agg_sum.get('lost')}; "
        f"collector events {col_sum.get('events')}, lost {col_sum.get('lost')}")
    n = f"{requests // 1000:,}k requests"
    return [
        Figure(f"memory: aggregator RSS, {CONNS:,} open connections", a["aggregator"], "MB",
               f"<= {AGG_TARGET_MB} MB", a["aggregator"] <= AGG_TARGET_MB),
        Figure(f"memory: aggregator RSS, after {n}", b["aggregator"], "MB",
               f"<= {AGG_TARGET_MB} MB, no growth",
               b["aggregator"] <= AGG_TARGET_MB and growth_ok(a["aggregator"], b["aggregator"]),
               note=f"idle {idle['aggregator']:.1f}, peak {peak['aggregator']:.1f}, after close "
                    f"{c['aggregator']:.1f} MB; records {agg_sum.get('records')}, "
                    f"lost {agg_sum.get('lost')}"),
        Figure(f"memory: collector RSS, {CONNS:,} open connections", a["collector"], "MB",
               f"<= {COL_TARGET_MB} MB", a["collector"] <= COL_TARGET_MB),
        Figure(f"memory: collector RSS, after {n}", b["collector"], "MB",
               f"<= {COL_TARGET_MB} MB, no growth",
               b["collector"] <= COL_TARGET_MB and growth_ok(a["collector"], b["collector"]),
               note=f"idle {idle['collector']:.1f}, peak {peak['collector']:.1f}, after close "
                    f"{c['collector']:.1f} MB; events {col_sum.get('events')}, "
                    f"lost {col_sum.get('lost')}"),
    ]
