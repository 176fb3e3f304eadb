"""Time from `s3slower run` to its `s3slower: ready` line (probes attached,
aggregator subscribed).  Target: at most 5 s.

    python -m bench startup
"""
from __future__ import annotations

from bench.harness import Figure, log, tracer

TARGET_S = 5.0
RUNS = 3


def measure(args: list[str]) -> list[float]:
    times = []
    for _ in range(RUNS):
        with tracer(args) as t:
            times.append(t.t_ready - t.t_start)
    return times


def run(quick: bool = False) -> list[Figure]:
    figures = []
    for label, args in (("trace all", []), ("--watch", ["--watch", "s3bclient"])):
        times = measure(args)
        log(f"startup {label}: {[round(t, 2) for t in times]} s")
        worst = max(times)
        figures.append(Figure(f"startup: start -> ready ({label}, worst of {RUNS})", worst,
                              "s", f"<= {TARGET_S:g} s", worst <= TARGET_S))
    return figures
