"""The ledger (common/losses.py): every loss and error source, fed through the
stage that counts it, is seen in the metrics text, /health?detail, the stop
summary and the status line -- all read from the same tick's snapshot."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
import urllib.request

import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_until
from s3slower import launch, reasons
from s3slower.aggregator import pipeline as pipeline_mod
from s3slower.aggregator.auth import ZAP_ENDPOINT, KeyAuthenticator
from s3slower.aggregator.outputs import OutputOptions, build_outputs
from s3slower.aggregator.pipeline import Pipeline
from s3slower.aggregator.records import Record
from s3slower.aggregator.service import Aggregator
from s3slower.collector.libraries import LibraryFinder
from s3slower.collector.publisher import Publisher
from s3slower.collector.service import Collector
from s3slower.common import protocol, recording
from s3slower.common.events import KERNEL_LOSS_SLOTS, Direction, Event, Kind, encode_event
from s3slower.common.losses import Family, Ledger, Loss, from_heartbeat, heartbeat_maps
from s3slower.common.protocol import Message, MsgKind
from s3slower.common.targets import Selection

TICK_NS = 10 * 10**9            # past the terminal's 5 s status interval


class Screen:
    """The terminal's stdout: records what it is given; `release` cleared, a
    write() waits (a reader gone to lunch)."""

    def __init__(self):
        self.text = io.StringIO()
        self.release = threading.Event()
        self.release.set()
        self.inside = threading.Event()

    def write(self, text: str) -> int:
        self.inside.set()
        assert self.release.wait(timeout=30)
        return self.text.write(text)

    def flush(self) -> None:
        pass


class Harness:
    """The aggregator as `s3slower aggregator` builds it (outputs, metrics
    endpoint, terminal table, log file), on a fake clock."""

    def __init__(self, tmp_path, monkeypatch):
        monkeypatch.setenv("COLUMNS", "200")        # a status line with room to spare
        self.monkeypatch = monkeypatch              # for feeders that lower a bound
        self.tmp_path = tmp_path
        self.log_dir = tmp_path / "log"
        opts = OutputOptions(output="table", log_dir=str(self.log_dir), prometheus=True,
                             prom_host="127.0.0.1", prom_port=0)
        self.extra: dict[Loss, int] = {}
        self.outputs = build_outputs(opts, [lambda: dict(self.extra)])
        self.screen = Screen()
        self.outputs.terminal.stream = self.screen
        self.now = 0
        self.agg = Aggregator(None, Pipeline(), self.outputs.sinks, clock=lambda: self.now,
                              loss_sources=self.outputs.loss_sources)
        self.agg.tick()
        self.seq: dict[str, int] = {}

    @property
    def log(self):
        return self.outputs.sinks[0]

    def send(self, kind: MsgKind, body: dict, host: str = "c1", seq=None) -> None:
        """A frame from collector `host` (its next sequence number by default)."""
        n = self.seq.get(host, 0) if seq is None else seq
        self.seq[host] = n + 1
        self.agg.handle_frames([protocol.encode(Message(kind, host, 1, n, 0, body))])

    def events(self, *evs: Event, host: str = "c1") -> None:
        self.send(MsgKind.EVENTS, {"events": [encode_event(e) for e in evs]}, host)

    def views(self, capsys) -> "Views":
        self.now += TICK_NS
        self.agg.tick()
        port = self.outputs.server.port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health?detail",
                                    timeout=10) as r:
            health = json.loads(r.read())
        self.outputs.close()
        capsys.readouterr()
        launch._aggregator_summary(self.agg, 0)
        summary = _summary(capsys.readouterr().err, "aggregator")
        status = [ln for ln in self.screen.text.getvalue().splitlines() if ln.startswith("-- ")]
        return Views(metrics, health, summary, status[-1])


class Views:
    def __init__(self, metrics: str, health: dict, summary: dict, status: str):
        self.families = {f.name: f for f in text_string_to_metric_families(metrics)}
        self.health = health
        self.summary = summary
        self.status = status

    def metric(self, loss: Loss) -> float:
        fam = self.families[loss.family.metric]
        (value,) = [s.value for s in fam.samples
                    if s.name.endswith("_total") and s.labels == {"source": loss.label}]
        return value


def _summary(err: str, who: str) -> dict:
    tag = f"s3slower {who} stopped: "
    (line,) = [ln for ln in err.splitlines() if ln.startswith(tag)]
    return json.loads(line[len(tag):])


@pytest.fixture
def h(tmp_path, monkeypatch):
    harness = Harness(tmp_path, monkeypatch)
    yield harness
    harness.outputs.close()


# -- feeding each source through its stage ----------------------------------------------

FED = {}


def feeds(*losses: Loss):
    def register(fn):
        for loss in losses:
            FED[loss] = fn
        return fn
    return register


def data(conn: int, egress: bool, payload: bytes, at: int = 1000) -> Event:
    return Event(at, at + 10, conn, 4242, 4242, 5, len(payload), Kind.DATA,
                 Direction.EGRESS if egress else Direction.INGRESS, 0, "client", payload, b"")


def event(kind: Kind, conn: int, payload: bytes = b"", pid: int = 4242) -> Event:
    return Event(1, 2, conn, pid, pid, 5, len(payload), kind, 0, 0, "client", payload, b"")


GET = b"GET /b/k HTTP/1.1\r\nHost: s3.local\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
SIN = b"\x02\x00\x1f\x90\x7f\x00\x00\x01" + b"\x00" * 8       # 127.0.0.1:8080


class _Probes:
    """The BPF side's counters as collector/probes.Probes keeps them (the real
    ones need root and a kernel: tests/test_loss.py's e2e test)."""

    def __init__(self, kernel: dict, attach_errors: int = 0, detach_errors: int = 0):
        self.kernel = kernel
        self.attach_errors = attach_errors
        self.detach_errors = detach_errors
        self.attached: dict = {}
        self.probes_attached = 0

    def lost_counts(self) -> dict[Loss, int]:
        return {m: self.kernel.get(m, 0) for m in KERNEL_LOSS_SLOTS.values()}


class _NoWarmFinder(LibraryFinder):
    """The real finder, without inspecting every process of the host at start."""

    def warm(self) -> None:
        pass

    def system_libraries(self) -> list:
        return []


def _collector_heartbeat(h: Harness, probes, feed=None,
                         endpoint="inproc://ledger-no-peer") -> dict:
    """A real Collector and Publisher (recording what it publishes; no peer, so
    nothing is sent) beat once; the recording goes to the aggregator.  Returns
    the collector's stop summary.  `probes`: an object, or a factory of one."""
    tape = io.BytesIO()
    tape.close = lambda: None                     # read back after the publisher closes
    pub = Publisher(zmq.Context.instance(), endpoint, bind=False,
                    hostname="c1", wall_offset_ns=0, record_to=tape, max_bytes=4096)
    factory = probes if callable(probes) else (lambda cb: probes)
    col = Collector(factory, pub, Selection(), finder=_NoWarmFinder())
    try:
        if feed:
            feed(col)
        col.heartbeat()
        summary = col.summary()
    finally:
        if callable(probes):
            col.probes.close()
        pub.close()
    h.agg.handle_frames(list(recording.read_frames(io.BytesIO(tape.getvalue()))))
    return summary


@feeds(*KERNEL_LOSS_SLOTS.values())
def _kernel(h, loss):
    summary = _collector_heartbeat(h, _Probes({loss: 7}))
    assert summary["lost"][loss.label] == 7
    return 7


@feeds(Loss.ATTACH)
def _attach(h, loss):
    assert _collector_heartbeat(h, _Probes({}, attach_errors=3))["tracer_errors"][
        loss.label] == 3
    return 3


@feeds(Loss.DETACH)
def _detach(h, loss):
    assert _collector_heartbeat(h, _Probes({}, detach_errors=2))["tracer_errors"][
        loss.label] == 2
    return 2


@feeds(Loss.ELF_PARSE)
def _elf_parse(h, loss):
    bad = h.tmp_path / "not-really.so"
    bad.write_bytes(b"\x7fELF" + b"\xff" * 60)

    def inspect(col):
        assert col.tracker.finder.for_file(str(bad)) is None
    summary = _collector_heartbeat(h, _Probes({}), inspect)
    assert summary["tracer_errors"][loss.label] == 1
    return 1


@feeds(Loss.COLLECTOR_OUTBOX)
def _outbox(h, loss):
    def overflow(col):                            # one 8 KiB record: over max_bytes
        col._on_record(encode_event(data(1, True, b"x" * 8192)))
        col._send_batch()
    assert _collector_heartbeat(h, _Probes({}), overflow)["lost"][loss.label] == 1
    return 1


@feeds(Loss.FAILOVER)
def _failover(h, loss):
    """Two aggregators' sockets; the one in use takes a batch and goes away."""
    ctx = zmq.Context.instance()
    pulls = [ctx.socket(zmq.PULL) for _ in range(2)]
    ports = [p.bind_to_random_port("tcp://127.0.0.1") for p in pulls]

    def drop(col):
        pub = col.publisher
        for _ in range(2):
            col._on_record(encode_event(data(1, True, GET)))
        col._send_batch()
        used = pulls[ports.index(int(pub.links.current.rsplit(":", 1)[1]))]
        wait_until(lambda: pub.flush() or used.poll(50), 10, "the batch")
        used.close(0)
        wait_until(lambda: pub.flush() or pub.unconfirmed_events(), 10, "the drop")
    try:
        summary = _collector_heartbeat(h, _Probes({}), drop,
                                       [f"tcp://127.0.0.1:{p}" for p in ports])
    finally:
        for p in pulls:
            p.close(0)
    assert summary["lost"][loss.label] == 2
    return 2


@feeds(Loss.COLLECTOR_OTHER)
def _other(h, loss):                              # a newer collector's name
    h.send(MsgKind.HEARTBEAT, {"stats": {}, "lost": {"ringbuf": 1, "from_the_future": 4}})
    return 4


@feeds(Loss.COLLECTORS_REFUSED)
def _refused(h, loss):
    ctx = zmq.Context()
    auth = KeyAuthenticator(ctx, frozenset())
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(ZAP_ENDPOINT)
    req.send_multipart([b"1.0", b"1"])             # a malformed ZAP request
    poller = zmq.Poller()
    poller.register(auth.sock, zmq.POLLIN)
    assert poller.poll(10_000)
    auth.handle()
    h.extra[loss] = auth.statistics().refused      # as aggregator/build.py wires it
    req.close()
    auth.sock.close()
    ctx.term()
    return 1


@feeds(Loss.TRANSPORT)
def _transport(h, loss):
    h.send(MsgKind.HELLO, {"pid": 1}, seq=0)
    h.send(MsgKind.HEARTBEAT, {"stats": {}, "lost": {}}, seq=4)
    return 3


@feeds(Loss.MALFORMED)
def _malformed(h, loss):
    h.agg.handle_frames([b"\x00junk"])
    h.send(MsgKind.EVENTS, {"events": [b"\x00" * 10]})   # a record shorter than a header
    return 2


@feeds(Loss.COLLECTOR_EVICTED)
def _collector_evicted(h, loss):
    h.monkeypatch.setattr(pipeline_mod, "MAX_COLLECTORS", 1)
    h.send(MsgKind.HELLO, {"pid": 1}, host="a")
    h.send(MsgKind.HELLO, {"pid": 1}, host="b")
    return 1


@feeds(Loss.PROCESS_EVICTED)
def _process_evicted(h, loss):
    h.monkeypatch.setattr(pipeline_mod, "MAX_PROCESSES", 1)
    for pid in (1, 2, 3):
        h.send(MsgKind.PROCESS, {"pid": pid, "labels": {}})
    return 2


@feeds(Loss.ADDRESS_EVICTED)
def _address_evicted(h, loss):
    h.monkeypatch.setattr(pipeline_mod, "MAX_ADDRESSES", 1)
    h.events(event(Kind.CONNECT, 1, SIN), event(Kind.CONNECT, 2, SIN))
    return 1


@feeds(Loss.CONN_EVICTED)
def _conn_evicted(h, loss):
    h.monkeypatch.setattr(pipeline_mod, "MAX_CONNECTIONS", 1)
    h.events(data(1, True, GET), data(2, True, GET))
    return 1


@feeds(Loss.OPAQUE_EVICTED)
def _opaque_evicted(h, loss):
    h.agg.pipeline._opaque.max_hellos = 1
    h.events(event(Kind.TLS_HELLO, 1, b"\x16\x03\x01"), event(Kind.TLS_HELLO, 2, b"\x16\x03\x01"))
    return 1


@feeds(Loss.MULTIPART_EVICTED)
def _multipart_evicted(h, loss):
    h.agg.pipeline._multipart.max_open = 1
    for conn, upload in ((1, b"u1"), (2, b"u2")):
        h.events(data(conn, True, b"PUT /b/k?partNumber=1&uploadId=" + upload +
                      b" HTTP/1.1\r\nHost: s3.local\r\nContent-Length: 0\r\n\r\n"),
                 data(conn, False, OK))
    return 1


@feeds(Loss.RETRY_EVICTED)
def _retry_evicted(h, loss):
    h.agg.pipeline._retries.max_failed = 1
    for conn, key in ((1, b"k1"), (2, b"k2")):
        h.events(data(conn, True, b"GET /b/" + key + b" HTTP/1.1\r\nHost: s3.local\r\n\r\n"),
                 data(conn, False, b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"))
    return 1


@feeds(Loss.STREAM_GAP)
def _stream_gap(h, loss):                         # closed inside a request head
    h.events(data(1, True, b"PUT /b/k HTTP/1.1\r\nHost: s3.local\r\n"),
             event(Kind.CLOSE, 1))
    return 1


@feeds(Loss.HTTP_INVALID)
def _http_invalid(h, loss):
    h.events(data(1, True, b"PUT /b/k HTTP/1.1\r\nHost: s3\r\nContent-Length: many\r\n\r\n"))
    return 1


@feeds(Loss.STREAM_SKIPPED)
def _skipped(h, loss):                            # bytes before the first message
    h.events(data(1, True, b"hello\n" + GET))
    return 6


@feeds(Loss.SUPERSEDED)
def _superseded(h, loss):
    h.events(data(1, True, GET, 1000), data(1, True, GET, 2000))
    return 1


@feeds(Loss.UNANSWERED)
def _unanswered(h, loss):                         # a mid-stream start: its request unseen
    h.events(data(1, False, OK))
    return 1


def _rec() -> Record:
    return Record(start_wall_ns=1, hostname="c1", pid=1, tid=1, comm="c", method="GET",
                  operation="GetObject", bucket="b", key="k", endpoint="e", path="/b/k",
                  status_code=200, error_code="", request_size=0, response_size=0,
                  ttfb_ns=1, latency_ns=1, tls="none", complete=True, labels={})


@feeds(Loss.TERMINAL)
def _terminal(h, loss):
    term = h.outputs.terminal
    h.screen.release.clear()
    h.screen.inside.clear()
    term.emit(_rec())
    assert h.screen.inside.wait(timeout=30)         # the writer is stuck in write()
    for _ in range(5000):
        term.emit(_rec())
    dropped = term.statistics().dropped_lines
    assert dropped > 0
    h.screen.release.set()
    deadline = time.monotonic() + 30              # the status line must find room
    while term.statistics().queued and time.monotonic() < deadline:
        time.sleep(0.01)
    return dropped


@feeds(Loss.LOG_QUEUE)
def _log_queue(h, loss):
    h.log.close()
    h.log.write(_rec())                           # after close: counted, not written
    return 1


@feeds(Loss.LOG_WRITE)
def _log_write(h, loss):
    h.log_dir.write_text("a file where the log directory should be")
    h.log.write(_rec())
    h.log.close()                                 # waits for the failed write
    return 1


@feeds(Loss.OTLP)
def _otlp(h, loss):                               # a receiver that is not there
    from conftest import free_port
    from s3slower.aggregator.otlp import OtlpSink
    from s3slower.common.otlpconfig import OtlpConfig
    sink = OtlpSink(OtlpConfig(enabled=True, endpoint=f"http://127.0.0.1:{free_port()}",
                               max_queued_spans=1, metrics=False))
    h.agg.book.sources.append(lambda: {Loss.OTLP: sink.lost()})
    for _ in range(3):
        sink.emit(_rec())                         # 1 sent (and failed), 2 over the bound
    sink.close()
    return 3


def test_every_source_has_a_feeder_here():
    assert set(FED) == set(Loss), set(Loss) - set(FED)


@pytest.mark.parametrize("loss", list(Loss), ids=lambda m: m.label)
def test_source_is_seen_in_metrics_health_summary_and_status_line(loss, h, capsys):
    n = FED[loss](h, loss)
    v = h.views(capsys)
    assert v.metric(loss) == n
    key = loss.family.summary_key
    assert v.summary[key][loss.label] == n
    assert v.health[key][loss.label] == n
    assert f"{loss.label} {n}" in v.status and f"{loss.family.word} " in v.status, v.status


def test_unfed_sources_are_zero_everywhere(h, capsys):
    v = h.views(capsys)
    assert all(v.metric(m) == 0 for m in Loss)
    assert all(n == 0 for f in Family for n in v.summary[f.summary_key].values())
    assert set(v.summary["lost"]) == {m.label for m in Loss if m.family is Family.LOST}
    assert "loss 0" in v.status and "tracer errors" not in v.status


# -- the pieces --------------------------------------------------------------------------

def test_heartbeat_maps_round_trip_every_reported_member():
    counts = {m: i + 1 for i, m in enumerate(Loss) if m.stage.reported
              and m is not Loss.COLLECTOR_OTHER}
    lost, stats = heartbeat_maps(counts)
    assert from_heartbeat(lost, stats) == {**counts, Loss.COLLECTOR_OTHER: 0}


def test_totals_only_grow_across_a_collector_restart_and_connection_close(h):
    h.send(MsgKind.HEARTBEAT, {"stats": {"attach_errors": 2}, "lost": {"ringbuf": 5}})
    h.events(data(1, True, GET, 1000), data(1, True, GET, 2000))
    before = Ledger.of(h.agg.pipeline.statistics().losses)
    h.agg.handle_frames([protocol.encode(Message(MsgKind.HELLO, "c1", 2, 0, 0, {}))])
    h.events(event(Kind.CLOSE, 1))
    after = Ledger.of(h.agg.pipeline.statistics().losses)
    assert after.counts[Loss.RINGBUF] == 5 and after.counts[Loss.ATTACH] == 2
    assert after.counts[Loss.SUPERSEDED] == 1
    assert all(after.counts[m] >= before.counts[m] for m in Loss)


def test_reasons_first_n_then_one_per_interval_with_a_count():
    lim = reasons.ReasonLimiter(first=2, every_s=10.0)
    got = [lim.admit(Loss.MALFORMED.label, f"r{i}", 1, now) for i, now in
           enumerate((0.0, 0.1, 0.2, 0.3, 0.4, 11.0, 12.0))]
    assert got[:2] == ["malformed +1: r0", "malformed +1: r1"]
    assert got[2] == "malformed +1: r2"               # the first after the burst
    assert got[3:5] == [None, None]
    assert got[5] == "malformed +1: r5 (2 more malformed reasons not shown)"
    assert got[6] is None
    assert lim.admit(Loss.TRANSPORT.label, "other source", 1, 12.0) == "transport +1: other source"


def test_reasons_are_logged_under_debug_only(h, caplog):
    with caplog.at_level(logging.WARNING, logger="s3slower"):
        h.agg.handle_frames([b"\x00quiet"])
    assert not caplog.records
    with caplog.at_level(logging.DEBUG, logger="s3slower"):
        h.agg.handle_frames([b"\x00junk"])
    (line,) = [r.getMessage() for r in caplog.records]
    assert re.match(r"malformed \+1: frame of 5 bytes: ", line), line


def test_replayed_run_summary_and_the_buffer_size_warning(tmp_path):
    """`s3slower aggregator --replay` end to end: the stop summary carries every
    family of the ledger, and a config's prometheus.buffer_size is one warning."""
    import subprocess
    import sys
    tape = tmp_path / "rec.s3s"
    frames = [protocol.encode(Message(MsgKind.HELLO, "c1", 1, 0, 0, {})),
              protocol.encode(Message(MsgKind.HEARTBEAT, "c1", 1, 3, 0,
                                      {"stats": {"detach_errors": 2}, "lost": {}})),
              b"\x00junk"]
    tape.write_bytes(recording.MAGIC + b"".join(recording.frame(f) for f in frames))
    cfg = tmp_path / "s3slower.yaml"
    cfg.write_text("prometheus: {buffer_size: 5000}\n")
    out = subprocess.run([sys.executable, "-m", "s3slower", "aggregator", "--replay", str(tape),
                          "-C", str(cfg), "--output", "none", "--no-log", "--allow-root"],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if "buffer_size" in ln]
    assert warnings == [f"s3slower: {cfg}: prometheus.buffer_size is deprecated and ignored "
                        "(metrics are read when scraped); remove it"]
    s = _summary(out.stderr, "aggregator")
    assert s["lost"]["transport"] == 2 and s["lost"]["malformed"] == 1
    assert s["tracer_errors"]["detach_errors"] == 2 and s["skipped_bytes"] == {"stream": 0}


@pytest.mark.e2e
def test_a_uprobe_the_kernel_refuses_is_counted_with_its_reason(h, capsys, caplog):
    """The real BPF program: a probe point past the end of its file is refused
    by the kernel, counted in attach_errors, and reaches all views."""
    from conftest import need_root_bpf
    need_root_bpf()
    from s3slower.collector import hostprep
    from s3slower.collector.libraries import Library, ProbePoint
    from s3slower.collector.probes import ProgramOptions, Probes
    hostprep.prepare()
    path = os.path.realpath("/bin/true")
    beyond = os.path.getsize(path) + (1 << 20)
    lib = Library("openssl", path, (ProbePoint(beyond, "ssl_write_enter", False, beyond),))

    def attach(col):
        assert col.probes.attach(lib) == 0
    with caplog.at_level(logging.DEBUG, logger="s3slower"):
        summary = _collector_heartbeat(
            h, lambda cb: Probes(ProgramOptions(trace_all=False), cb), attach)
    assert summary["tracer_errors"]["attach_errors"] == 1
    assert any(r.getMessage().startswith(f"attach_errors +1: ssl_write_enter at {path}+")
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    v = h.views(capsys)
    assert v.metric(Loss.ATTACH) == 1 and v.summary["tracer_errors"]["attach_errors"] == 1
    assert "attach_errors 1" in v.status
