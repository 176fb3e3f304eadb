"""What the tracer costs when there is nothing to trace: `s3slower run
--output json --no-log` tracing everything on a quiet host, both halves'
CPU over 60 s (15 s with --quick), and how often each wakes up.
Target (issue "A tracer that costs almost nothing"): both halves together at
most 0.3 % of one core; nothing wakes on a short timer.

    python -m bench idle
"""
from __future__ import annotations

import subprocess
import time

from bench.harness import (S3SLOWER, Figure, Proc, aggregator_pid, cpu_seconds, log,
                           wakeups)

TARGET_PCT = 0.3
SETTLE_S = 5


def run(quick: bool = False) -> list[Figure]:
    seconds = 15 if quick else 60
    p = Proc([S3SLOWER, "run", "--output", "json", "--no-log"], "idle", "s3slower: ready",
             stdout=subprocess.DEVNULL)
    try:
        agg = aggregator_pid(p.pid)
        time.sleep(SETTLE_S)            # start-up's own work is not idle
        pids = {"collector": p.pid, "aggregator": agg}
        cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
        wake0 = {k: wakeups(v) for k, v in pids.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        pct = {k: 100 * (cpu_seconds(v) - cpu0[k]) / wall for k, v in pids.items()}
        per_s = {k: (wakeups(v) - wake0[k]) / wall for k, v in pids.items()}
    finally:
        p.stop()
    total = sum(pct.values())
    log(f"idle over {wall:.0f} s: " + ", ".join(
        f"{k} {pct[k]:.3f} % of a core, {per_s[k]:.1f} wake-ups/s" for k in pct))
    figures = [Figure(f"idle: {k} CPU ({seconds} s, trace all)", pct[k], "% core")
               for k in pct]
    figures += [Figure(f"idle: {k} wake-ups", per_s[k], "/s") for k in per_s]
    figures.append(Figure(f"idle: both halves CPU ({seconds} s, trace all)", total, "% core",
                          f"<= {TARGET_PCT:g} %", total <= TARGET_PCT))
    return figures
