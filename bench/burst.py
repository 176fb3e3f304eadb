"""A burst of small requests from several minimal clients at once: where the knee is.

CLIENTS processes of bench/s3bgen.c (`conns` mode: a C client and its own
server thread, CONNS keep-alive connections each, request/response pairs
round-robin) offer a total rate for SECONDS, under `s3slower run --watch
s3bgen` (a tracer started anew for each rate, so its stop summary is that
rate's).  Per rate: what the clients achieved, every request recorded or
not, loss by source, each half's CPU as a share of one core, and how long
the aggregator took to catch up once the clients were done (buffers absorb
a short burst that it cannot keep up with: all is recorded, late).  Target (issue
"A tracer that costs almost nothing", figure 4): at 20,000 requests/s
offered, zero loss, every request recorded, neither half above one core;
the knee is the highest rate that still holds all of that.

    python -m bench burst
"""
from __future__ import annotations

import subprocess
import time

from bench.harness import (BenchError, Figure, aggregator_pid, build_helper, cpu_seconds,
                           expect_line, log, tracer)

CLIENTS = 4
CONNS = 8
SECONDS = 3.0
RATES = (5_000, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000)
TARGET_RATE = 20_000
MAX_LAG_S = 0.5     # the aggregator keeps up: done this soon after the clients


def catch_up(pid: int, quiet_cpu_s: float = 0.01, poll_s: float = 0.1,
             limit_s: float = 60.0) -> float:
    """Seconds until the aggregator goes quiet after the clients are done:
    how far behind the traffic it ran."""
    t0 = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() - t0 < limit_s:
        time.sleep(poll_s)
        now = cpu_seconds(pid)
        if now - last < quiet_cpu_s:
            return time.monotonic() - t0 - poll_s
        last = now
    return limit_s


def step(exe: str, rate: int, seconds: float) -> dict:
    count = int(rate / CLIENTS * seconds)
    with tracer(["--watch", "s3bgen"]) as t:
        pids = {"collector": t.pid, "aggregator": aggregator_pid(t.pid)}
        gens = [subprocess.Popen([exe, "conns", str(CONNS)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(CLIENTS)]
        try:
            for g in gens:
                expect_line(g, "open", 60)
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            t0 = time.monotonic()
            for g in gens:
                g.stdin.write(f"run {rate / CLIENTS} {count}\n")
                g.stdin.flush()
            done = [expect_line(g, "done", seconds * 20 + 60) for g in gens]
            wall = time.monotonic() - t0
            cpu = {k: (cpu_seconds(p) - cpu0[k]) / wall for k, p in pids.items()}
            lag = catch_up(pids["aggregator"])
        finally:
            for g in gens:
                g.kill()
                g.wait(5)
    sent = sum(int(d.split()[1].split("=")[1]) for d in done)
    ns = max(int(d.split()[2].split("=")[1]) for d in done)
    agg, col = t.summary("aggregator"), t.summary("collector")
    if not agg or not col:
        raise BenchError("the tracer did not print its stop summaries")
    made = sent + CLIENTS * CONNS                # and one request per connection opened
    lost = {**{f"kernel {k}": v for k, v in col.get("lost", {}).items() if v},
            **{k: v for k, v in agg.get("lost", {}).items() if v}}
    return {"offered": rate, "achieved": sent / (ns / 1e9), "made": made,
            "recorded": agg.get("records", 0), "errors": agg.get("errors", 0), "lost": lost,
            "cpu": cpu, "lag": lag}


def run(quick: bool = False) -> list[Figure]:
    exe = build_helper()
    rates = (5_000, TARGET_RATE) if quick else RATES
    results = []
    for rate in rates:
        r = step(exe, rate, 1.0 if quick else SECONDS)
        r["ok"] = (not r["lost"] and r["recorded"] == r["made"] and r["errors"] == 0
                   and max(r["cpu"].values()) <= 1.0 and r["lag"] <= MAX_LAG_S)
        log(f"burst {rate:,}/s offered: {r['achieved']:,.0f}/s achieved, "
            f"{r['recorded']:,} of {r['made']:,} recorded, errors {r['errors']}, "
            f"lost {r['lost'] or 0}, collector {r['cpu']['collector']:.2f} core, "
            f"aggregator {r['cpu']['aggregator']:.2f} core, caught up {r['lag']:.2f} s after "
            f"-> {'ok' if r['ok'] else 'NOT ok'}")
        results.append(r)
    at = next(r for r in results if r["offered"] == TARGET_RATE)
    knee = max((r["offered"] for r in results if r["ok"]), default=0)
    return [
        Figure(f"burst: {TARGET_RATE:,} req/s offered ({CLIENTS} clients): achieved",
               at["achieved"], "req/s"),
        Figure(f"burst: {TARGET_RATE:,} req/s: recorded of made", at["recorded"] / at["made"],
               "", "= 1, no loss", at["recorded"] == at["made"] and not at["lost"]),
        Figure(f"burst: {TARGET_RATE:,} req/s: busier half", max(at["cpu"].values()), "core",
               "<= 1", max(at["cpu"].values()) <= 1.0),
        Figure(f"burst: {TARGET_RATE:,} req/s: aggregator caught up after the clients",
               at["lag"], "s", f"<= {MAX_LAG_S:g} s", at["lag"] <= MAX_LAG_S),
        Figure("burst: knee (highest rate offered with all of the above)", knee, "req/s",
               f">= {TARGET_RATE:,}", knee >= TARGET_RATE),
    ]
