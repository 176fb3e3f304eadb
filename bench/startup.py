"""Time from `s3slower run` to its `s3slower: ready` line (probes attached,
aggregator subscribed), and from Ctrl-C (SIGINT) to its exit.  Targets: ready
in at most 2 s tracing everything (issue "A tracer that costs almost
nothing"), stopped in at most 3 s (issue "From any checkout").  The first
start after an install, an upgrade or a new kernel compiles the BPF program
and inspects the host's files; later ones find both in the collector's cache
(/var/cache/s3slower: bpf/ and libraries.json), so both are reported.

    python -m bench startup
"""
from __future__ import annotations

import signal
import time

from bench.harness import Figure, log, tracer
from s3slower.collector import bpfobject, filecache

READY_TARGET_S = 2.0
STOP_TARGET_S = 3.0
RUNS = 3


def measure(args: list[str]) -> tuple[list[float], list[float]]:
    ready, stop = [], []
    for _ in range(RUNS):
        with tracer(args) as t:
            ready.append(t.t_ready - t.t_start)
            t0 = time.monotonic()
            t.stop(signal.SIGINT)
            stop.append(time.monotonic() - t0)
    return ready, stop


def run(quick: bool = False) -> list[Figure]:
    figures = []
    filecache.DEFAULT_PATH.unlink(missing_ok=True)
    for kept in bpfobject.CACHE_DIR.glob("*.json"):
        kept.unlink()
    cold, _ = measure([])
    log(f"startup trace all, nothing cached then cached: {[round(t, 2) for t in cold]} s")
    figures.append(Figure("startup: start -> ready (trace all, first start: program "
                          "compiled, files inspected)", cold[0], "s"))
    for label, args in (("trace all", []), ("--watch", ["--watch", "s3bclient"])):
        ready, stop = measure(args)
        log(f"startup {label}: ready {[round(t, 2) for t in ready]} s, "
            f"stop {[round(t, 2) for t in stop]} s")
        worst = max(ready)
        figures.append(Figure(f"startup: start -> ready ({label}, worst of {RUNS})", worst,
                              "s", f"<= {READY_TARGET_S:g} s", worst <= READY_TARGET_S))
        worst = max(stop)
        figures.append(Figure(f"startup: Ctrl-C -> exited ({label}, worst of {RUNS})", worst,
                              "s", f"<= {STOP_TARGET_S:g} s", worst <= STOP_TARGET_S))
    return figures
