"""What tracing costs the clients it watches: a real S3 workload, traced vs not.

Workload: boto3 (bench/s3client.py, comm `s3bclient`) against a fast local
S3-ish server (bench/s3server.py, plain HTTP and TLS), one request at a time
on a keep-alive connection:
  (a) small objects: GetObject and PutObject of 4 KiB, over HTTP and TLS;
  (b) large objects: GetObject of 32 MiB over TLS (throughput).
Each case runs for a fixed time untraced and traced, alternately (the order
flips every round), under `s3slower run` tracing everything ("all") and
tracing only the client (`--watch s3bclient`).

Figures per case and mode:
  * throughput ratio traced / untraced (target >= 0.97 over plain HTTP, and
    over TLS with --watch);
  * added time per request, from the wall clock (noisy on a shared 2-core
    machine) and from the kernel's BPF run statistics (bpf_stats_enabled):
    hits of each probe type per request x the measured cost of an *empty*
    probe hit + the time our programs ran beyond an empty program's.
    Target (issue "A tracer that costs almost nothing", figure 5):
    bpf-derived added time <= 1.2 x floor over TLS, <= 1.5 x floor over
    plain HTTP.  The floor: over TLS, the probe hits priced at the empty
    hit's cost; over plain HTTP, that plus the least cost of one
    ring-buffer record (bench/bpfcost.py's LEAST_RECORD, measured in the
    same run) for each record a request needs: one per head and one per
    body end (records_needed).  Beside it, for context (no target): the same
    floor with each hit's empty program priced as it runs between the real
    client's calls (empty_in_workload: its code and data out of cache), not
    in calibrate()'s loop.
Probe hits are counted in the collector's own programs (fdinfo run_cnt), so
with "all" they include the server's library calls and syscalls; the rate
of hits while idle (other processes on the machine) is measured and removed.
Each case's programs (runs, and run time beyond an empty program's, per
request) are printed on stderr.

    python -m bench overhead
    python -m bench.overhead [--cases http] [--modes watch,pid] [--rounds N]
      (a subset: the cases whose name contains one of the words; mode "pid"
      is "watch" by the client's pid, blind to other processes of its name)
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from bench.harness import (PROG_TYPE_KPROBE, Figure, BenchError, bpf_stats_enabled,
                           build_helper, fd_run_stats, hits_between, log, make_cert, median,
                           program_costs, prog_names, prog_stats, tracer)

ROUNDS = 3
SMALL = 4096
LARGE = 32 * 1024 * 1024
FLOOR_FACTOR = {True: 1.2, False: 1.5}   # by case.tls
RATIO_TARGET = 0.97
CALIBRATION_CALLS = 200_000
IDLE_S = 1.0


@dataclass(frozen=True)
class Case:
    name: str
    tls: bool
    op: str
    size: int
    seconds: float

    @property
    def large(self) -> bool:
        return self.size >= LARGE


CASES = (
    Case("GET 4KiB http", False, "get", SMALL, 3.0),
    Case("PUT 4KiB http", False, "put", SMALL, 3.0),
    Case("GET 4KiB tls", True, "get", SMALL, 3.0),
    Case("PUT 4KiB tls", True, "put", SMALL, 3.0),
    Case("GET 32MiB tls", True, "get", LARGE, 4.0),
)
MODES = {"all": [], "watch": ["--watch", "s3bclient"]}
PID_MODE = "pid"            # --pid CLIENT: only on request (python -m bench.overhead --modes)

# http.client reads a response 8 KiB at a time: a body that fits with its
# head comes in the call that reads the head
FIRST_READ = 8192 - 512


def records_needed(case: Case) -> int:
    """Records a plain-HTTP request needs at the least (the issue's floor):
    one per head and one per body end, a body that ends in its head's call
    ending in that record.
      GET: the request head, the response head (a 4 KiB body comes whole
        with it), and the body's end if it comes in later calls: 2 (4 KiB).
      PUT as boto3 sends it (Expect: 100-continue): the request head, the
        interim `100 Continue` head, the request body's end (written in its
        own call after the 100 Continue), the final answer's head
        (Content-Length: 0): 4."""
    if case.op == "put":
        return 4
    return 2 + (case.size > FIRST_READ)


# --------------------------------------------------------------------------
# the floor: what an empty probe hit costs on this machine

EMPTY_TP = """
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) { return 0; }
TRACEPOINT_PROBE(syscalls, sys_exit_getppid) { return 0; }
"""
EMPTY_UPROBE = """
int empty_enter(struct pt_regs *ctx) { return 0; }
int empty_return(struct pt_regs *ctx) { return 0; }
"""


# The I/O syscalls whose tracepoints a plain-HTTP request hits
IO_SYSCALLS = ("read", "write", "readv", "writev", "sendto", "recvfrom", "sendmsg", "recvmsg")
EMPTY_IO_TP = "".join(f"TRACEPOINT_PROBE(syscalls, sys_{e}_{s}) {{ return 0; }}\n"
                      for s in IO_SYSCALLS for e in ("enter", "exit"))


@dataclass(frozen=True)
class Floor:
    uprobe_hit_ns: float      # per program run, uprobe + uretprobe on one function / 2
    uprobe_single_ns: float   # one uprobe alone on a function
    tp_hit_ns: float          # per program run, sys_enter + sys_exit on one syscall / 2
    uprobe_empty_run_ns: float
    tp_empty_run_ns: float
    record_ns: float = 0.0    # the least ring-buffer record, beyond an empty program

    def of(self, case: Case, up_hits: float, tp_hits: float) -> float:
        """The floor of a request, us: its probe hits at the empty hit's
        cost, and over plain HTTP the least records it needs."""
        ns = up_hits * self.uprobe_hit_ns + tp_hits * self.tp_hit_ns
        if not case.tls:
            ns += records_needed(case) * self.record_ns
        return ns / 1000


def empty_in_workload(w: "Workload", cases) -> dict[str, float]:
    """case name -> ns an *empty* program runs per hit of the I/O tracepoints
    while that case runs untraced (by bpf_stats, other processes' hits while
    idle removed).  calibrate() measures it in a loop, where the program and
    its path stay in cache; between a real client's calls they do not, and
    what any program costs there bounds what ours can."""
    from bcc import BPF
    b = BPF(text=EMPTY_IO_TP)
    try:
        fds = [f.fd for f in b.funcs.values()]

        def total() -> tuple[int, int]:
            runs = [fd_run_stats(fd) for fd in fds]
            return sum(r[0] for r in runs), sum(r[1] for r in runs)

        c0, n0 = total()
        time.sleep(IDLE_S)
        c1, n1 = total()
        idle_cnt, idle_ns = (c1 - c0) / IDLE_S, (n1 - n0) / IDLE_S
        out = {}
        for case in cases:
            a = total()
            r = w.run(case)
            z = total()
            cnt = max(z[0] - a[0] - idle_cnt * r["seconds"], 1)
            out[case.name] = max(z[1] - a[1] - idle_ns * r["seconds"], 0) / cnt
    finally:
        b.cleanup()
    return out


def calibrate(records: bool = True) -> Floor:
    from s3slower.collector import hostprep
    hostprep.prepare()
    from bcc import BPF
    exe = build_helper()
    p = subprocess.Popen([exe, "probe", str(CALIBRATION_CALLS)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        if p.stdout.readline().strip() != "ready":
            raise BenchError("s3bgen probe did not start")

        def go(k: int = 5) -> tuple[float, float]:
            calls, sys_ = [], []
            for _ in range(k):
                p.stdin.write("go\n")
                p.stdin.flush()
                a, b = p.stdout.readline().split()
                calls.append(float(a.split("=")[1]))
                sys_.append(float(b.split("=")[1]))
            return median(calls), median(sys_)

        base_call, base_sys = go()
        b = BPF(text=EMPTY_TP)
        try:
            _, tp_sys = go()
            runs = [fd_run_stats(f.fd) for f in b.funcs.values()]
        finally:
            b.cleanup()
        tp_cnt = sum(r[0] for r in runs)
        tp_rt = sum(r[1] for r in runs) / max(tp_cnt, 1)
        b = BPF(text=EMPTY_UPROBE)
        try:
            b.attach_uprobe(name=exe.encode(), sym=b"s3b_target", fn_name=b"empty_enter",
                            pid=p.pid)
            single, _ = go(3)
            b.attach_uretprobe(name=exe.encode(), sym=b"s3b_target", fn_name=b"empty_return",
                               pid=p.pid)
            pair, _ = go(3)
            runs = [fd_run_stats(b.load_func(n, BPF.KPROBE).fd)
                    for n in (b"empty_enter", b"empty_return")]
        finally:
            b.cleanup()
        up_cnt = sum(r[0] for r in runs)
        up_rt = sum(r[1] for r in runs) / max(up_cnt, 1)
    finally:
        p.kill()
        p.wait(5)
    record_ns = 0.0
    if records:
        from bench.bpfcost import LEAST_RECORD, least_record_ns
        record_ns = least_record_ns()
    f = Floor(uprobe_hit_ns=(pair - base_call) / 2, uprobe_single_ns=single - base_call,
              tp_hit_ns=(tp_sys - base_sys) / 2, uprobe_empty_run_ns=up_rt,
              tp_empty_run_ns=tp_rt, record_ns=record_ns)
    log(f"floor: empty uprobe {f.uprobe_single_ns / 1000:.2f} us alone, "
        f"{f.uprobe_hit_ns / 1000:.2f} us per hit of an entry+return pair; empty tracepoint "
        f"{f.tp_hit_ns / 1000:.3f} us per hit (syscall {base_sys:.0f} ns untraced); an empty "
        f"program runs {f.uprobe_empty_run_ns:.0f} ns (uprobe) / {f.tp_empty_run_ns:.0f} ns "
        f"(tracepoint) by bpf_stats"
        + (f"; the least record ({LEAST_RECORD}) {f.record_ns:.0f} ns beyond an empty program"
           if records else ""))
    return f


# --------------------------------------------------------------------------
# the workload

class Workload:
    """Two servers (HTTP, TLS) and one client driver, started once."""

    def __init__(self):
        self.cert, key = make_cert()
        py = sys.executable
        self.procs = []
        self.http = self._server([py, "-m", "bench.s3server"])
        self.https = self._server([py, "-m", "bench.s3server", "--cert", self.cert,
                                   "--key", key])
        self.client = subprocess.Popen([py, "-m", "bench.s3client"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, cwd=_root())
        self.procs.append(self.client)
        ready = json.loads(self.client.stdout.readline())
        self.client_pid = ready["ready"]

    def _server(self, args) -> str:
        p = subprocess.Popen(args + ["--port", "0"], stdout=subprocess.PIPE, text=True,
                             cwd=_root())
        self.procs.append(p)
        line = p.stdout.readline().split()
        if not line or line[0] != "port":
            raise BenchError("the bench S3 server did not start")
        return line[1]

    def run(self, case: Case, max_requests: int = 0, minimal: bool = False) -> dict:
        url = f"https://127.0.0.1:{self.https}" if case.tls else f"http://127.0.0.1:{self.http}"
        cmd = {"url": url, "ca": self.cert if case.tls else None, "op": case.op,
               "size": case.size, "seconds": case.seconds, "minimal": minimal}
        if max_requests:
            cmd["max_requests"] = max_requests
        self.client.stdin.write(json.dumps(cmd) + "\n")
        self.client.stdin.flush()
        line = self.client.stdout.readline()
        if not line:
            raise BenchError("the bench client died")
        return json.loads(line)

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(5)


def _root() -> str:
    from bench.harness import ROOT
    return str(ROOT)


@dataclass
class Tally:
    requests: int = 0
    seconds: float = 0.0
    bytes: int = 0
    up_cnt: int = 0
    up_ns: int = 0
    tp_cnt: int = 0
    tp_ns: int = 0
    rounds: list = field(default_factory=list)
    programs: dict = field(default_factory=dict)  # name -> [runs, run ns, type], idle removed

    def add(self, r: dict) -> None:
        self.requests += r["requests"]
        self.seconds += r["seconds"]
        self.bytes += r["bytes"]
        self.rounds.append(r["requests"] / r["seconds"])

    @property
    def s_per_req(self) -> float:
        return self.seconds / max(self.requests, 1)


def _traced_round(w: Workload, mode_args: list[str], tallies: dict) -> dict:
    with tracer(mode_args) as t:
        names = prog_names(t.pid)
        s0 = prog_stats(t.pid)
        time.sleep(IDLE_S)
        s1 = prog_stats(t.pid)
        idle = hits_between(s0, s1)
        idle_by_prog = {i: ((s.run_cnt - s0[i].run_cnt) / IDLE_S,
                            (s.run_time_ns - s0[i].run_time_ns) / IDLE_S)
                        for i, s in s1.items() if i in s0}
        for case in CASES:
            a = prog_stats(t.pid)
            r = w.run(case)
            z = prog_stats(t.pid)
            h = hits_between(a, z)
            k = r["seconds"] / IDLE_S
            tl = tallies[case.name]
            tl.add(r)
            for name, pc in program_costs(a, z, 1, names, idle_by_prog, r["seconds"]).items():
                acc = tl.programs.setdefault(name, [0.0, 0.0, pc.prog_type])
                acc[0] += pc.hits
                acc[1] += pc.ns
            tl.up_cnt += max(h.uprobe_cnt - int(idle.uprobe_cnt * k), 0)
            tl.up_ns += max(h.uprobe_ns - int(idle.uprobe_ns * k), 0)
            tl.tp_cnt += max(h.tp_cnt - int(idle.tp_cnt * k), 0)
            tl.tp_ns += max(h.tp_ns - int(idle.tp_ns * k), 0)
    return t.summary("collector")


def run(quick: bool = False, rounds: int = 0, modes=None) -> list[Figure]:
    rounds = rounds or (1 if quick else ROUNDS)
    figures: list[Figure] = []
    with bpf_stats_enabled():
        floor = calibrate()
        figures.append(Figure("floor: empty uprobe hit (alone)", floor.uprobe_single_ns / 1000,
                              "us"))
        figures.append(Figure("floor: empty uprobe hit (entry+return pair, per hit)",
                              floor.uprobe_hit_ns / 1000, "us"))
        figures.append(Figure("floor: empty syscall tracepoint hit", floor.tp_hit_ns / 1000,
                              "us"))
        w = Workload()
        try:
            cold = empty_in_workload(w, [c for c in CASES if not c.tls])
            log("an empty program per hit of the I/O tracepoints, in the workload: "
                + ", ".join(f"{k} {v:.0f} ns" for k, v in cold.items())
                + f" (in a loop: {floor.tp_empty_run_ns:.0f} ns)")
            for mode in modes or MODES:
                args = ["--pid", str(w.client_pid)] if mode == PID_MODE else MODES[mode]
                base = {c.name: Tally() for c in CASES}
                traced = {c.name: Tally() for c in CASES}
                lost = {}
                for rnd in range(rounds):
                    order = ("untraced", "traced") if rnd % 2 == 0 else ("traced", "untraced")
                    for which in order:
                        if which == "untraced":
                            for case in CASES:
                                base[case.name].add(w.run(case))
                        else:
                            lost = _traced_round(w, args, traced).get("lost", {})
                    log(f"overhead [{mode}] round {rnd + 1}/{rounds} done; collector lost {lost}")
                figures += _figures(mode, floor, base, traced, cold)
        finally:
            w.close()
    return figures


def _figures(mode: str, floor: Floor, base: dict, traced: dict,
             cold: dict[str, float]) -> list[Figure]:
    out = []
    for case in CASES:
        b, t = base[case.name], traced[case.name]
        if case.large:
            ratio = (t.bytes / t.seconds) / (b.bytes / b.seconds)
        else:
            ratio = (t.requests / t.seconds) / (b.requests / b.seconds)
        added_wall_us = (t.s_per_req - b.s_per_req) * 1e6
        n = max(t.requests, 1)
        up_hits, tp_hits = t.up_cnt / n, t.tp_cnt / n
        hits_us = (up_hits * floor.uprobe_hit_ns + tp_hits * floor.tp_hit_ns) / 1000
        floor_us = floor.of(case, up_hits, tp_hits)
        _log_programs(mode, case, floor, t)
        extra_run_us = ((t.up_ns - t.up_cnt * floor.uprobe_empty_run_ns)
                        + (t.tp_ns - t.tp_cnt * floor.tp_empty_run_ns)) / n / 1000
        added_bpf_us = hits_us + extra_run_us     # the records' cost is in the run time
        floor_ratio = b.s_per_req / (b.s_per_req + floor_us / 1e6)
        ratio_target = (not case.tls) or mode == "watch"
        unit = "MB/s" if case.large else "req/s"
        rate_b = (b.bytes / b.seconds / 1e6) if case.large else b.requests / b.seconds
        rate_t = (t.bytes / t.seconds / 1e6) if case.large else t.requests / t.seconds
        log(f"overhead [{mode}] {case.name}: {rate_b:,.1f} -> {rate_t:,.1f} {unit} "
            f"(ratio {ratio:.3f}; rounds untraced {[round(x) for x in b.rounds]} traced "
            f"{[round(x) for x in t.rounds]}); added {added_wall_us:.1f} us/req wall, "
            f"{added_bpf_us:.1f} us/req bpf; hits/req uprobe {up_hits:.1f} tracepoint "
            f"{tp_hits:.1f}; floor {floor_us:.1f} us/req (floor ratio {floor_ratio:.3f})")
        what = "throughput" if case.large else "req/s"
        out.append(Figure(
            f"overhead {case.name} [{mode}]: {what} ratio", ratio, "",
            f">= {RATIO_TARGET}" if ratio_target else "",
            (ratio >= RATIO_TARGET) if ratio_target else None,
            note=f"{rate_b:,.1f} -> {rate_t:,.1f} {unit}; wall-clock added "
                 f"{added_wall_us:.1f} us/request; floor alone gives ratio {floor_ratio:.3f}"))
        factor = FLOOR_FACTOR[case.tls]
        if case.tls:
            what_floor = (f"per request: {up_hits:.1f} uprobe hits + {tp_hits:.1f} tracepoint "
                          f"hits = floor {floor_us:.1f} us")
        else:
            what_floor = (f"per request: {up_hits:.1f} uprobe hits + {tp_hits:.1f} tracepoint "
                          f"hits = {hits_us:.2f} us, + {records_needed(case)} records (one per "
                          f"head and one per body end"
                          + (": request head, 100 Continue, request body end, final head"
                             if case.op == "put" else "") +
                          f") x {floor.record_ns:.0f} ns = floor {floor_us:.2f} us")
        out.append(Figure(
            f"overhead {case.name} [{mode}]: added us/request (bpf_stats)", added_bpf_us, "us",
            f"<= {factor} x floor = {factor * floor_us:.2f} us",
            added_bpf_us <= factor * floor_us,
            note=f"{what_floor}; programs ran {extra_run_us:.2f} us beyond empty "
                 f"({added_bpf_us / floor_us if floor_us else 0:.2f} x floor)"))
        if case.name in cold:
            # the same floor with each hit's empty program run as it runs in
            # this workload, not in a loop: context for the figure above
            cold_us = floor_us + tp_hits * (cold[case.name] - floor.tp_empty_run_ns) / 1000
            out.append(Figure(
                f"overhead {case.name} [{mode}]: added / floor with empty runs in the workload",
                added_bpf_us / cold_us, "",
                note=f"an empty program runs {cold[case.name]:.0f} ns per hit between this "
                     f"client's calls ({floor.tp_empty_run_ns:.0f} ns in a loop): floor "
                     f"{cold_us:.2f} us, added {added_bpf_us:.2f} us"))
    return out


def _log_programs(mode: str, case: Case, floor: Floor, t: Tally) -> None:
    """Each program's runs and time per request, on stderr, costliest first.
    A tail-called program (io_exit_tp, frame_head_tp, ...) runs inside its
    caller's run: bpf_stats counts its time in the caller's (sys_exit_*)."""
    n = max(t.requests, 1)
    rows = []
    for name, (hits, ns, ptype) in t.programs.items():
        empty = floor.uprobe_empty_run_ns if ptype == PROG_TYPE_KPROBE else floor.tp_empty_run_ns
        rows.append((ns - hits * empty, name, hits, ns))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows) / n
    log(f"overhead [{mode}] {case.name}: programs, per request ({total / 1000:.2f} us beyond "
        f"empty programs in all; tail calls inside their callers): "
        + "; ".join(f"{name} {hits / n:.2f} runs x {ns / max(hits, 1e-9):,.0f} ns "
                    f"= {beyond / n:,.0f} ns beyond empty"
                    for beyond, name, hits, ns in rows if hits / n >= 0.005))


# --------------------------------------------------------------------------
# object-size sweep for docs/performance.md: python -m bench.overhead sizes

SWEEP_SIZES = (1024, 16 * 1024, 256 * 1024, 4 * 1024 * 1024)


def sweep(mode: str = "watch", seconds: float = 3.0) -> None:
    cases = [Case(f"GET {s // 1024}KiB {'tls' if tls else 'http'}", tls, "get", s, seconds)
             for tls in (False, True) for s in SWEEP_SIZES]
    w = Workload()
    try:
        with bpf_stats_enabled():
            floor = calibrate()
            base = {c.name: Tally() for c in cases}
            traced = {c.name: Tally() for c in cases}
            for c in cases:
                base[c.name].add(w.run(c))
            global CASES
            saved, CASES = CASES, tuple(cases)
            try:
                _traced_round(w, MODES[mode], traced)
                for c in cases:
                    base[c.name].add(w.run(c))
            finally:
                CASES = saved
    finally:
        w.close()
    print(f"{'case':16} {'untraced':>12} {'traced':>12} {'ratio':>6} {'added us':>9} "
          f"{'uprobe/req':>10} {'tp/req':>8} {'floor us':>9} {'bpf us':>8}")
    for c in cases:
        b, t = base[c.name], traced[c.name]
        n = max(t.requests, 1)
        floor_us = floor.of(c, t.up_cnt / n, t.tp_cnt / n)
        bpf_us = floor_us + ((t.up_ns - t.up_cnt * floor.uprobe_empty_run_ns)
                             + (t.tp_ns - t.tp_cnt * floor.tp_empty_run_ns)) / n / 1000
        rb, rt = b.requests / b.seconds, t.requests / t.seconds
        print(f"{c.name:16} {rb:10,.0f}/s {rt:10,.0f}/s {rt / rb:6.3f} "
              f"{(t.s_per_req - b.s_per_req) * 1e6:9.1f} {t.up_cnt / n:10.1f} "
              f"{t.tp_cnt / n:8.1f} {floor_us:9.1f} {bpf_us:8.1f}")


def main(argv=None) -> None:
    import argparse
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sizes"]:
        sweep(*(argv[1:2] or ["watch"]))
        return
    ap = argparse.ArgumentParser(prog="python -m bench.overhead")
    ap.add_argument("--cases", default="", help="comma-separated words: the cases whose "
                    "name contains one (e.g. http, GET)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"comma-separated, of {', '.join(MODES)}, {PID_MODE}")
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    a = ap.parse_args(argv)
    global CASES
    words = [x for x in a.cases.split(",") if x]
    if words:
        CASES = tuple(c for c in CASES if any(x in c.name for x in words))
    from bench.harness import print_table
    print_table(run(rounds=a.rounds, modes=[m for m in a.modes.split(",") if m]))


if __name__ == "__main__":
    main()
