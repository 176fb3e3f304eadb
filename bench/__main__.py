"""`python -m bench [NAME ...] [--quick]`: run the benches, print one table.

NAME is any of startup, coldattach, idle, records, tracercpu, burst, collector, aggregator,
memory, overhead, bpfcost, latency, shortlived, soak
(default: all, in that order; about 12-14 minutes on the 2-core reference
machine), or compiled (bench/compiled.py: only when named).
Progress and the detailed per-step figures go to stderr; the table (figure,
value, target, met?) goes to stdout.  Exit status 0 when every target is met,
1 otherwise.  Needs root (BPF) and gcc (bench/s3bgen.c).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

from bench.harness import BenchError, Figure, clean_work_dir, ensure_py_spy, log, print_table

BENCHES = ("startup", "coldattach", "idle", "records", "tracercpu", "burst", "collector",
           "aggregator", "memory", "overhead", "bpfcost", "latency", "shortlived", "soak")
ON_REQUEST = ("compiled",)      # not in the default set


def machine_speed() -> Figure:
    """How fast this machine runs CPython right now: the same 2-core VM has
    measured 2x apart on different days, which moves every CPU-bound figure."""
    t = time.perf_counter()
    s = 0
    for i in range(10_000_000):
        s += i
    return Figure("machine: CPython reference loop (10M additions)", time.perf_counter() - t, "s",
                  note="the time of a fixed pure-Python loop; CPU-bound figures scale with it")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"benches to run (default all: {', '.join(BENCHES)})")
    ap.add_argument("--quick", action="store_true",
                    help="fewer rounds and requests: a smoke run, not the figures")
    a = ap.parse_args(argv)
    unknown = [n for n in a.names if n not in BENCHES + ON_REQUEST]
    if unknown:
        ap.error(f"unknown bench {unknown[0]!r} "
                 f"(choose from {', '.join(BENCHES + ON_REQUEST)})")
    if os.geteuid() != 0:
        print("python -m bench: needs root (it loads BPF programs)", file=sys.stderr)
        return 2
    ensure_py_spy()
    clean_work_dir()
    figures: list[Figure] = [machine_speed()]
    t0 = time.monotonic()
    for name in a.names or BENCHES:
        log(f"--- {name}")
        t = time.monotonic()
        mod = importlib.import_module(f"bench.{name}")
        try:
            figures += mod.run(quick=a.quick)
        except (BenchError, OSError) as exc:
            traceback.print_exc()
            figures.append(Figure(f"{name}: could not run", None, "", "runs", False,
                                  note=str(exc)))
        log(f"--- {name} took {time.monotonic() - t:.0f}s")
    print()
    print_table(figures)
    met = all(f.met is not False for f in figures)
    print(f"\n{sum(f.met is True for f in figures)} targets met, "
          f"{sum(f.met is False for f in figures)} missed, in {time.monotonic() - t0:.0f}s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
