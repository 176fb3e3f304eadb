"""The tracer's CPU per request beside the client's own, from one run.

`s3slower run --watch s3bclient` (so other processes' traffic on this shared
machine is not counted) and the bench client doing one case for a fixed
time; the CPU time each process used (/proc, user + system) over the case,
divided by the requests made.  Targets (issue "A tracer that costs almost
nothing", figure 2): collector + aggregator at most 10 % of the client's
own CPU for boto3, 20 % for a minimal client (http.client, no SDK).

    python -m bench tracercpu
"""
from __future__ import annotations

import time

from bench.harness import Figure, aggregator_pid, cpu_seconds, log, tracer
from bench.overhead import Case, Workload

SECONDS = 5.0
SETTLE_S = 1.5          # the aggregator finishes what is queued
# name, TLS, operation, minimal client, target ratio
CASES = (("GET 4KiB http", False, "get", False, 0.10),
         ("PUT 4KiB http", False, "put", False, 0.10),
         ("GET 4KiB tls", True, "get", False, 0.10),
         ("PUT 4KiB tls", True, "put", False, 0.10),
         ("GET 4KiB http, minimal client", False, "get", True, 0.20))


def run(quick: bool = False) -> list[Figure]:
    seconds = 2.0 if quick else SECONDS
    w = Workload()
    figures = []
    try:
        with tracer(["--watch", "s3bclient"]) as t:
            pids = {"collector": t.pid, "aggregator": aggregator_pid(t.pid),
                    "client": w.client_pid}
            for name, tls, op, minimal, target in CASES:
                before = {k: cpu_seconds(p) for k, p in pids.items()}
                done = w.run(Case(name, tls, op, 4096, seconds), minimal=minimal)
                time.sleep(SETTLE_S)
                n = done["requests"] + 1
                us = {k: 1e6 * (cpu_seconds(p) - before[k]) / n for k, p in pids.items()}
                ratio = (us["collector"] + us["aggregator"]) / us["client"]
                log(f"tracer cpu {name}: {n} requests; per request collector "
                    f"{us['collector']:.0f} us, aggregator {us['aggregator']:.0f} us, "
                    f"client {us['client']:.0f} us -> {ratio:.3f}")
                figures += [Figure(f"tracer CPU: {name}: collector per request",
                                   us["collector"], "us"),
                            Figure(f"tracer CPU: {name}: aggregator per request",
                                   us["aggregator"], "us"),
                            Figure(f"tracer CPU: {name}: client's own per request",
                                   us["client"], "us"),
                            Figure(f"tracer CPU: {name}: both halves / client", ratio, "",
                                   f"<= {target:g}", ratio <= target)]
    finally:
        w.close()
    return figures
