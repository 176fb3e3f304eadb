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
MODES = (("trace all", []), ("--watch", ["--watch", "s3bclient"]))


def measure(args: list[str], runs: int) -> tuple[list[float], list[float]]:
    ready, stop = [], []
    for _ in range(runs):
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
    for label, args in MODES:
        first, _ = measure(args, 1)      # each mode's flags make an object of their own
        log(f"startup {label}, nothing cached: {first[0]:.2f} s")
        figures.append(Figure(f"startup: start -> ready ({label}, first start: "
                              "the program compiled)", first[0], "s"))
    for label, args in MODES:
        ready, stop = measure(args, RUNS)
        log(f"startup {label}: ready {[round(t, 2) for t in ready]} s, "
            f"stop {[round(t, 2) for t in stop]} s")
        worst = max(ready)
        figures.append(Figure(f"startup: start -> ready ({label}, worst of {RUNS})", worst,
                              "s", f"<= {READY_TARGET_S:g} s", worst <= READY_TARGET_S))
        worst = max(stop)
        figures.append(Figure(f"startup: Ctrl-C -> exited ({label}, worst of {RUNS})", worst,
                              "s", f"<= {STOP_TARGET_S:g} s", worst <= STOP_TARGET_S))
    return figures
