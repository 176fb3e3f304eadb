"""Processes come and go: the tracer keeps up and forgets them.

* A short-lived client started after `ready` (curl, two HTTPS requests) has
  all its requests captured (TLS, everything-mode: the system libssl is
  probed system-wide before ready, so its first SSL_write is seen).  How
  short a life that is on this machine is a bench figure (`python -m bench
  shortlived`), not a condition here.
* With --watch, the kernel itself marks a watched name traced at exec, so a
  plain-HTTP client that connects within milliseconds of exec is followed.
* 200 short-lived traced processes (targets mode: per-pid uprobes attached
  at exec and detached at exit) leave nothing behind: the collector's
  statistics() and every BPF map hold none of their pids afterwards.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import threading

import pytest

from conftest import Tracer, need_root_bpf, wait_until
from tls_fixtures import bucket_name, marker_arrives, presigner

pytestmark = pytest.mark.e2e
SHORT_LIVED = 200


def test_short_lived_https_client_after_ready(tracer, moto_https):
    s3 = presigner(moto_https)
    bucket = bucket_name("quick")
    s3.create_bucket(Bucket=bucket)
    url = f"{moto_https.url}/{bucket}?list-type=2"
    p = subprocess.Popen(["curl", "-sS", "--cacert", str(moto_https.ca), "-o", "/dev/null",
                          "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4",
                          "aws:amz:us-east-1:s3", "--user", "testing:testing", url, url],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and out == "200200", err
    tracer.wait_records({p.pid}, 2)
    marker_arrives(tracer)   # curl has exited: anything extra of it is out by now
    recs = tracer.records_for({p.pid})
    assert [(r["operation"], r["bucket"], r["status_code"], r["tls"], r["complete"])
            for r in recs] == [("ListObjectsV2", bucket, 200, "openssl", True)] * 2


def test_watched_name_followed_from_exec(tmp_path, moto_http):
    need_root_bpf()
    t = Tracer(tmp_path, ["--watch", "curl"])
    try:
        url = f"{moto_http.url}/quick-{os.getpid()}?list-type=2"
        procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", url]) for _ in range(5)]
        for p in procs:
            assert p.wait(30) == 0
        pids = {p.pid for p in procs}
        recs = t.wait_records(pids, len(pids))
        assert {r["pid"] for r in recs} == pids
    finally:
        t.stop()


def test_200_short_lived_processes_leave_no_state(moto_http):
    need_root_bpf()
    import zmq

    from s3slower.collector import hostprep
    from s3slower.collector.probes import MAP_NAMES, ProgramOptions, Probes
    from s3slower.collector.publisher import Publisher
    from s3slower.collector.service import Collector
    from s3slower.common.events import Kind, decode_event
    from s3slower.common import protocol
    from s3slower.common.protocol import MsgKind
    from s3slower.common.targets import Selection

    hostprep.prepare()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind("inproc://lifecycle")
    pub = Publisher(ctx, "inproc://lifecycle", bind=False, hostname="t", wall_offset_ns=0)
    opts = ProgramOptions(trace_all=False, self_pid=os.getpid())
    col = Collector(lambda cb: Probes(opts, cb), pub, Selection.build(watch=("curl",)))
    stop, ready = threading.Event(), threading.Event()
    th = threading.Thread(target=col.run, args=(stop.is_set, ready.set), daemon=True)
    th.start()
    data_pids: set[int] = set()

    def pump() -> bool:
        while pull.poll(0):
            msg = protocol.decode(pull.recv())
            if msg.kind is MsgKind.EVENTS:
                for raw in msg.body["events"]:
                    ev = decode_event(raw)
                    if ev.kind == Kind.DATA:
                        data_pids.add(ev.pid)
        return True

    pids: set[int] = set()
    try:
        assert ready.wait(60), "collector not ready"
        url = f"{moto_http.url}/lifecycle?list-type=2"
        for _ in range(SHORT_LIVED // 4):
            batch = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", url]) for _ in range(4)]
            for p in batch:
                assert p.wait(30) == 0
                pids.add(p.pid)
            pump()
        wait_until(lambda: pump() and pids <= data_pids, 20, "data from every process")
        wait_until(lambda: col.statistics().exits >= SHORT_LIVED
                   and col.statistics().traced_processes == 0, 20,
                   "the collector to see every exit")
        st = col.statistics()
        assert st.traced_processes == 0 and st.probes_attached == 0, st
        assert not col.tracker.traced and not col.probes.attached
        assert st.execs >= SHORT_LIVED
        b = col.probes.obj
        pid_of = {"conns": lambda k: k.value >> 32, "ssl_fds": lambda k: k.pid,
                  "active_go": lambda k: k.pid}
        for name in MAP_NAMES:
            keys = list(b[name].keys())
            get = pid_of.get(name, lambda k: k.value)
            left = [k for k in keys if get(k) in pids]
            assert not left, f"{name} still holds {len(left)} entries of exited processes"
        assert len(list(b["traced_pids"].keys())) == 0
        assert [bytes(k.c).rstrip(b"\0") for k in b["watch_comms"].keys()] == [b"curl"]
    finally:
        stop.set()
        th.join(10)
        col.probes.close()
        pub.close()
        pull.close()
        ctx.term()
