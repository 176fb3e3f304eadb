"""What each building block of a BPF program costs on this machine.

The overhead bench compares our programs with an *empty* one; this one shows
where the difference goes.  Each block runs alone in a program on the
getppid() entry tracepoint, hit CALLS times by this process; the figure is
its run time per hit by the kernel's BPF run statistics, minus an empty
program's.  Recording what one read/write moved needs at least: the
connection lookup at entry, per-thread state at entry and exit, two clock
reads, one copy from user memory, the process name and a ring-buffer record
-- the sum below, set against what the overhead target leaves per hit
(0.5 x an empty tracepoint hit).

    python -m bench bpfcost
"""
from __future__ import annotations

import ctypes
import os

from bench.harness import Figure, bpf_stats_enabled, fd_run_stats, log

CALLS = 100_000

PRELUDE = """
#include <uapi/linux/ptrace.h>
struct rec { u8 head[128]; char comm[16]; u8 data[8192]; };
struct args { u64 start_ns; u64 buf; u32 fd; u32 n; };
BPF_RINGBUF_OUTPUT(events, 256);
BPF_PERCPU_ARRAY(scratch, struct rec, 1);
BPF_HASH(by_tid, u32, struct args, 16384);
BPF_TABLE("lru_hash", u64, u64, conns, 65536);
BPF_TASK_STORAGE(threads, struct args);
"""

SCRATCH = "u32 z = 0; struct rec *r = scratch.lookup(&z); if (!r) return 0;"

# name -> program body; every name but "empty" is a figure
BLOCKS = {
    "empty": "return 0;",
    "pid/tid": "return bpf_get_current_pid_tgid() == 7;",
    "clock read": "return bpf_ktime_get_ns() == 7;",
    "connection lookup (LRU hash, miss)":
        "u64 k = bpf_get_current_pid_tgid(); return conns.lookup(&k) != 0;",
    "per-thread state, hash (update + delete)":
        "u32 k = bpf_get_current_pid_tgid(); struct args a = {}; a.fd = 3;"
        " by_tid.update(&k, &a); by_tid.delete(&k); return 0;",
    "per-thread state, task storage (get)":
        "struct args *a = threads.task_storage_get(bpf_get_current_task_btf(), 0,"
        " BPF_LOCAL_STORAGE_GET_F_CREATE); if (a) a->fd = 3; return 0;",
    "process name": SCRATCH + " bpf_get_current_comm(r->comm, 16); return 0;",
    "copy 64 B from user memory":
        SCRATCH + " bpf_probe_read_user(r->data, 64, (void *)USER_BUF); return 0;",
    "copy 4 KiB from user memory":
        SCRATCH + " bpf_probe_read_user(r->data, 4096, (void *)USER_BUF); return 0;",
    "ring-buffer record, 144 B":
        SCRATCH + " events.ringbuf_output(r, 144, BPF_RB_NO_WAKEUP); return 0;",
    "ring-buffer record, 4 KiB":
        SCRATCH + " events.ringbuf_output(r, 4096 + 80, BPF_RB_NO_WAKEUP); return 0;",
}

# the least a recorded call (entry + exit) does, by block
CALL_PAIR = {
    "connection lookup (LRU hash, miss)": 1,
    "per-thread state, task storage (get)": 2,
    "clock read": 2,
    "pid/tid": 1,
    "copy 64 B from user memory": 1,
    "process name": 1,
    "ring-buffer record, 144 B": 1,
}


def _run_ns(body: str, user_buf: int) -> float:
    from bcc import BPF
    src = PRELUDE + "TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {" + body + "}"
    b = BPF(text=src.replace("USER_BUF", str(user_buf)))
    try:
        if "ringbuf" in body:
            b[b"events"].open_ring_buffer(lambda _c, _d, _s: 0)
        fd = next(iter(b.funcs.values())).fd
        for i in range(CALLS):
            os.getppid()
            if i % 1000 == 0 and "ringbuf" in body:
                b.ring_buffer_consume()
        cnt, ns = fd_run_stats(fd)
        return ns / max(cnt, 1)
    finally:
        b.cleanup()


# The least a record costs: one ring-buffer record of a header and a few
# bytes, beyond an empty program (the overhead bench's plain-HTTP floor).
LEAST_RECORD = "ring-buffer record, 144 B"


def least_record_ns(k: int = 3) -> float:
    """LEAST_RECORD's run time beyond an empty program's, ns (median of k
    pairs, each measured back to back).  Needs bpf_stats enabled."""
    diffs = sorted(_run_ns(BLOCKS[LEAST_RECORD], 0) - _run_ns(BLOCKS["empty"], 0)
                   for _ in range(k))
    return diffs[k // 2]


def run(quick: bool = False) -> list[Figure]:
    from bench.overhead import calibrate     # it prepares the kernel headers too
    buf = ctypes.create_string_buffer(8192)
    with bpf_stats_enabled():
        floor = calibrate(records=False)   # it measures the record itself
        raw = {name: _run_ns(body, ctypes.addressof(buf)) for name, body in BLOCKS.items()}
    empty = raw.pop("empty")
    log(f"bpfcost: an empty program runs {empty:.0f} ns per hit; blocks (ns beyond it): "
        + ", ".join(f"{k} {v - empty:.0f}" for k, v in raw.items()))
    figures = [Figure(f"bpf block: {name}", v - empty, "ns") for name, v in raw.items()]
    pair = sum(n * (raw[name] - empty) for name, n in CALL_PAIR.items())
    budget = 2 * 0.5 * floor.tp_hit_ns
    figures.append(Figure(
        "bpf: least a recorded read/write adds (entry + exit)", pair, "ns",
        note=f"vs {budget:.0f} ns that 1.5 x floor leaves per call pair "
             f"(an empty tracepoint hit costs {floor.tp_hit_ns:.0f} ns)"))
    return figures


if __name__ == "__main__":
    from bench.harness import print_table
    print_table(run())
