"""What the collector ships per request: kernel records and bytes.

The bench client (boto3, bench/s3client.py) against the bench server, one
case at a time; `s3slower collector --pid CLIENT --record FILE` records
exactly what is published.  Per request: kernel data records, and captured
bytes beyond the heads.  Targets (issue "A tracer that costs almost
nothing", figure 3): at most 4 records and 2 KB beyond the heads for any
Content-Length exchange of any size, plain or TLS.  Chunked bodies (boto3's
aws-chunked uploads over TLS) are copied as far as their framing needs: they
are reported, without a target.

    python -m bench records
"""
from __future__ import annotations

import os

from bench.harness import S3SLOWER, WORK, Figure, Proc, log
from bench.overhead import Case, Workload
from s3slower.common import recording
from s3slower.common.events import Kind

RECORDS_TARGET = 4
BEYOND_HEADS_TARGET = 2048
REQUESTS = 20
CASES = (("get", 4096, False), ("put", 4096, False), ("get", 4096, True),
         ("put", 4096, True), ("get", 32 << 20, True), ("put", 8 << 20, False))
HEAD_STARTS = (b"HTTP/1.", b"GET ", b"PUT ", b"HEAD ", b"POST ", b"DELETE ")


def shipped(path, pid: int) -> list:
    """The data records of pid in a recording."""
    with open(path, "rb") as f:
        return [ev for ev in recording.events(f) if ev.pid == pid and ev.kind == Kind.DATA]


def measure(w: Workload, op: str, size: int, tls: bool, requests: int) -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    rec = WORK / f"records-{os.getpid()}.rec"
    sock = WORK / f"records-{os.getpid()}.sock"
    col = Proc([S3SLOWER, "collector", "--bind", f"ipc://{sock}", "--pid", str(w.client_pid),
                "--record", str(rec)], "records-collector", "s3slower collector: ready")
    try:
        done = w.run(Case(f"{op} {size}", tls, op, size, 60.0), max_requests=requests)
    finally:
        col.stop()
    data = shipped(rec, w.client_pid)
    rec.unlink()
    n = done["requests"] + 1                    # and the client's untimed first one
    heads = [ev for ev in data if ev.data.startswith(HEAD_STARTS)]
    chunked = any(b"transfer-encoding: chunked" in ev.data.lower() for ev in heads)
    return {"records": len(data) / n, "beyond": sum(len(ev.data) for ev in data
                                                    if ev not in heads) / n,
            "chunked": chunked}


def run(quick: bool = False) -> list[Figure]:
    w = Workload()
    figures = []
    try:
        for op, size, tls in CASES:
            m = measure(w, op, size, tls, 5 if quick else REQUESTS)
            name = f"records: {op.upper()} {_size(size)} {'TLS' if tls else 'http'}"
            log(f"{name}: {m['records']:.2f} records, {m['beyond']:.0f} B beyond heads "
                f"a request{' (chunked body)' if m['chunked'] else ''}")
            if m["chunked"]:
                figures.append(Figure(f"{name} (chunked): records a request", m["records"], ""))
                figures.append(Figure(f"{name} (chunked): bytes beyond heads", m["beyond"], "B"))
                continue
            figures.append(Figure(f"{name}: records a request", m["records"], "",
                                  f"<= {RECORDS_TARGET}", m["records"] <= RECORDS_TARGET))
            figures.append(Figure(f"{name}: bytes beyond heads a request", m["beyond"], "B",
                                  f"<= {BEYOND_HEADS_TARGET}",
                                  m["beyond"] <= BEYOND_HEADS_TARGET))
    finally:
        w.close()
    return figures


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"
