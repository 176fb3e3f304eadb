"""Events per second the collector drains and publishes with zero loss.

A synthetic generator of traced syscalls (bench/s3bgen.c, `blast` mode)
writes HTTP-looking requests over one loopback TCP connection — writev() of
4 requests per call, each a separate kernel record — paced at a ladder of
rates.  The real collector (`s3slower collector --watch s3bgen`) drains the
ring buffer and publishes; this bench pulls what it publishes and counts the
generator's records.  A rate passes when every record arrived and the
collector counted no loss (ring buffer, outbox).

Two figures: the highest rate of the ladder passed with zero loss, and the
collector's capacity per core = records / the collector's own CPU seconds
(from /proc/PID/stat) at the highest passing rate — the figure that other
load on this 2-core machine does not blur.  Target: >= 250,000 events/s.

    python -m bench collector
"""
from __future__ import annotations

import os
import subprocess
import threading
import time

import zmq

from bench.harness import (WORK, BenchError, Figure, Proc, S3SLOWER, build_helper,
                           cpu_seconds, log, profile_top, profiled)
from s3slower.common import protocol
from s3slower.common.events import peek_pid
from s3slower.common.protocol import MsgKind

TARGET = 250_000
LADDER = (100_000, 250_000, 400_000, 500_000, 600_000, 800_000, 1_000_000)
SECONDS_PER_STEP = 3.0
IOV = 4


class Counter(threading.Thread):
    """PULL from the collector; count records of one pid."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 1000)
        self.sock.connect(endpoint)
        self.pid = -1
        self.count = 0
        self.gaps = 0
        self.last_seq = None
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            if not self.sock.poll(100):
                continue
            msg = protocol.decode(self.sock.recv())
            if self.last_seq is not None and msg.seq > self.last_seq + 1:
                self.gaps += msg.seq - self.last_seq - 1
            self.last_seq = msg.seq
            if msg.kind is not MsgKind.EVENTS:
                continue
            pid = self.pid
            self.count += sum(1 for raw in msg.body["events"] if peek_pid(raw) == pid)

    def close(self) -> None:
        self.stop = True
        self.join(5)
        self.sock.close(0)
        self.ctx.term()


def step(gen_exe: str, rate: int, profile: bool = False) -> dict:
    count = int(rate * SECONDS_PER_STEP)
    gen = subprocess.Popen([gen_exe, "blast", str(rate), str(count), str(IOV)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    sock = WORK / f"collector-bench-{os.getpid()}.sock"
    col = None
    counter = None
    try:
        if gen.stdout.readline().strip() != "ready":
            raise BenchError("s3bgen did not start")
        col = Proc([S3SLOWER, "collector", "--bind", f"ipc://{sock}", "--watch", "s3bgen",
                    "--hostname", "bench"], "collector", "s3slower collector: ready")
        counter = Counter(f"ipc://{sock}")
        counter.pid = gen.pid
        counter.start()
        time.sleep(0.3)            # the PULL connection is up
        cpu0 = cpu_seconds(col.pid)
        t0 = time.monotonic()
        if profile:
            ctx = profiled(col.pid, "collector", SECONDS_PER_STEP + 2)
            prof = ctx.__enter__()
        gen.stdin.write("go\n")
        gen.stdin.flush()
        out = gen.stdout.readline().split()
        sent = int(out[0].split("=")[1])
        gen_ns = int(out[1].split("=")[1])
        deadline = time.monotonic() + 10
        last = -1
        while time.monotonic() < deadline and counter.count < sent:
            if counter.count == last and time.monotonic() - t0 > gen_ns / 1e9 + 2:
                break
            last = counter.count
            time.sleep(0.2)
        cpu = cpu_seconds(col.pid) - cpu0
        if profile:
            ctx.__exit__(None, None, None)
        col.stop()
        summary = col.summary("collector")
        lost = summary.get("lost", {})
        lost_total = sum(int(v) for v in lost.values())
        received = counter.count
        return {"rate": rate, "sent": sent, "received": received,
                "gen_rate": sent / (gen_ns / 1e9), "collector_cpu_s": cpu,
                "per_core": received / cpu if cpu > 0 else 0.0, "lost": lost,
                "transport_gaps": counter.gaps,
                "ok": received >= sent and lost_total == 0 and counter.gaps == 0,
                "profile": prof if profile else None}
    finally:
        if counter is not None:
            counter.close()
        if col is not None:
            col.stop()
        gen.kill()
        gen.wait(5)
        try:
            sock.unlink()
        except OSError:
            pass


def run(quick: bool = False) -> list[Figure]:
    gen = build_helper()
    best = None
    results = []
    for rate in LADDER[:3] if quick else LADDER:
        r = step(gen, rate)
        results.append(r)
        log(f"collector {rate:,}/s: sent {r['sent']:,} received {r['received']:,} "
            f"(generator {r['gen_rate']:,.0f}/s) lost {r['lost']} gaps {r['transport_gaps']} "
            f"cpu {r['collector_cpu_s']:.2f}s -> {r['per_core']:,.0f}/s per core")
        if not r["ok"]:
            break
        best = r
    figures = [Figure("collector: highest paced rate with zero loss",
                      best["gen_rate"] if best else 0.0, "events/s", f">= {TARGET:,}",
                      bool(best) and best["gen_rate"] >= TARGET)]
    ref = best or results[0]
    figures.append(Figure("collector: events per collector CPU-second", ref["per_core"],
                          "events/s/core", f">= {TARGET:,}", ref["per_core"] >= TARGET,
                          note=f"at {ref['rate']:,}/s offered; the collector used "
                               f"{ref['collector_cpu_s']:.2f} CPU-s for "
                               f"{ref['received']:,} records"))
    if not (best and best["gen_rate"] >= TARGET):
        prof = step(gen, TARGET, profile=True)["profile"]
        top = profile_top(prof, 8)
        log("collector profile (self time): " + "; ".join(f"{s:.0%} {f}" for s, f in top))
    return figures
