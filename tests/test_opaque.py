"""Opaque TLS lines from kernel records to outputs (aggregator/opaque.py,
opaque_out.py): the pipeline's lines, the Aggregator's routing, the warning,
the metrics, the JSON terminal and the log file."""
from __future__ import annotations

import io
import json
import logging

from prometheus_client import CollectorRegistry

from s3slower.aggregator.logfile import RotatingJsonLog
from s3slower.aggregator.opaque import OpaqueTls
from s3slower.aggregator.opaque_out import (JsonTerminal, OpaqueMetrics, OpaqueWarnings,
                                            warning_text)
from s3slower.aggregator.pipeline import Pipeline
from s3slower.aggregator.service import Aggregator
from s3slower.aggregator.terminal import JsonRenderer, TableRenderer
from s3slower.common import protocol
from s3slower.common.events import OPAQUE, Direction, Event, Kind
from s3slower.common.protocol import Message, MsgKind
from test_clienthello import hello

PID, CONN = 4242, 7_000_000
SIN = b"\x02\x00\x01\xbb\x0a\x00\x00\x07" + b"\x00" * 8          # 10.0.0.7:443
OFFSET = 1_700_000_000 * 10**9


def ev(kind: Kind, payload: bytes = b"", at: int = CONN, conn: int = CONN,
       pid: int = PID) -> Event:
    return Event(at if kind != Kind.OPAQUE else conn, at, conn, pid, pid + 1, 5,
                 len(payload), kind, Direction.EGRESS, 0, "worker-1", payload, b"")


def counts(sent: int, received: int, closed: bool) -> bytes:
    return OPAQUE.pack(sent, received, int(closed), 0)


def msg(kind: MsgKind, body: dict, seq: int = 0) -> Message:
    return Message(kind, "host-a", 1, seq, OFFSET, body)


def batch(*events: Event, seq: int = 1) -> Message:
    from s3slower.common.events import encode_event
    return msg(MsgKind.EVENTS, {"events": [encode_event(e) for e in events]}, seq)


def opened(p: Pipeline, stack: str = "java") -> None:
    p.handle(msg(MsgKind.PROCESS, {"pid": PID, "comm": "java", "labels": {"team": "a"},
                                   "tls_stack": stack}), 0)
    p.handle(batch(ev(Kind.CONNECT, SIN), ev(Kind.TLS_HELLO, hello("s3.example"))), 0)


def test_a_closed_connection_is_one_line():
    p = Pipeline()
    opened(p)
    [line] = p.handle(batch(ev(Kind.OPAQUE, counts(1200, 5600, True), at=CONN + 250_000_000),
                            seq=2), 0)
    assert isinstance(line, OpaqueTls)
    d = line.to_json_dict()
    assert d == {"kind": "opaque_tls", "timestamp": d["timestamp"], "hostname": "host-a",
                 "pid": PID, "comm": "java", "endpoint": "10.0.0.7:443", "sni": "s3.example",
                 "stack": "java", "bytes_sent": 1200, "bytes_received": 5600,
                 "duration_ms": 250.0, "open": False, "labels": {"team": "a"}}
    assert d["timestamp"] == "2023-11-14T22:13:20.007000Z"       # connect(), wall clock
    assert (line.first, line.new_sent, line.new_received) == (True, 1200, 5600)
    assert len(p._opaque) == 0


def test_reports_while_open_then_at_close():
    p = Pipeline()
    opened(p, stack="bogus")
    [a] = p.handle(batch(ev(Kind.OPAQUE, counts(100, 200, False), at=CONN + 10**10)), 0)
    [b] = p.handle(batch(ev(Kind.OPAQUE, counts(300, 500, True), at=CONN + 2 * 10**10)), 0)
    assert (a.closed, a.first, a.new_sent, a.new_received, a.sni) == \
        (False, True, 100, 200, "s3.example")
    assert a.to_json_dict()["open"] and a.stack == "unknown"     # not a known guess
    assert (b.closed, b.first, b.new_sent, b.new_received, b.sni, b.endpoint) == \
        (True, False, 200, 300, "s3.example", "10.0.0.7:443")


def test_plaintext_on_the_connection_forgets_its_hello():
    p = Pipeline()
    opened(p)
    recs = p.handle(batch(Event(CONN + 5, CONN + 6, CONN, PID, PID, 5, 9, Kind.DATA,
                                Direction.EGRESS, 1, "python", b"GET / HTT", b"")), 0)
    assert recs == [] and len(p._opaque) == 0


def test_requests_have_no_kind_key():
    get, ok = b"GET /b/k HTTP/1.1\r\nHost: s3.local\r\n\r\n", \
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    p = Pipeline()
    recs = p.handle(batch(Event(1, 2, 9, PID, PID, 5, len(get), Kind.DATA, Direction.EGRESS,
                                0, "c", get, b""),
                          Event(3, 4, 9, PID, PID, 5, len(ok), Kind.DATA, Direction.INGRESS,
                                0, "c", ok, b""),
                          ev(Kind.CLOSE, conn=9)), 0)
    assert [r.operation for r in recs] == ["GetObject"]
    assert "kind" not in recs[0].to_json_dict()


class _Sink:
    def __init__(self, opaque: bool):
        self.recs, self.lines = [], []
        if opaque:
            self.emit_opaque = self.lines.append

    def emit(self, rec):
        self.recs.append(rec)

    def tick(self, snap, now):
        pass

    def close(self):
        pass


def test_the_aggregator_routes_lines_to_sinks_that_take_them():
    both, requests_only = _Sink(True), _Sink(False)
    agg = Aggregator(None, Pipeline(), [both, requests_only], min_latency_ms=10_000)
    frames = [protocol.encode(m) for m in (
        msg(MsgKind.PROCESS, {"pid": PID, "comm": "java", "labels": {}}),
        batch(ev(Kind.CONNECT, SIN), ev(Kind.TLS_HELLO, b"\x16\x03\x01"),
              ev(Kind.OPAQUE, counts(1, 2, True), at=CONN + 1)))]
    agg.handle_frames(frames)
    assert [type(x) for x in both.lines] == [OpaqueTls]      # --min-latency is for requests
    assert both.recs == requests_only.recs == requests_only.lines == []


def line(pid: int = PID, comm: str = "java", sni: str = "s3.example", first: bool = True,
         sent: int = 10, received: int = 20) -> OpaqueTls:
    return OpaqueTls(OFFSET, "host-a", pid, comm, "10.0.0.7:443", sni, "java", sent, received,
                     5_000_000, True, sent, received, first)


def test_one_warning_per_process():
    said = []
    w = OpaqueWarnings(said.append, max_warned=2)
    for rec in (line(), line(), line(pid=7, comm="trino"), line()):
        w.emit_opaque(rec)
    assert said == [f"pid {PID} (java) speaks TLS to s3.example:443 through a library "
                    "s3slower cannot read (stack: java)",
                    "pid 7 (trino) speaks TLS to s3.example:443 through a library "
                    "s3slower cannot read (stack: java)"]
    assert warning_text(line(sni="")).startswith(f"pid {PID} (java) speaks TLS to 10.0.0.7:443")


def test_the_warning_is_a_logged_warning(caplog):
    with caplog.at_level(logging.WARNING, "s3slower.opaque"):
        OpaqueWarnings().emit_opaque(line())
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_metrics_count_connections_once_and_bytes_by_comm_bounded():
    reg = CollectorRegistry()
    m = OpaqueMetrics(reg, max_comms=3)
    for rec in (line(), line(first=False, sent=5, received=0), line(comm="trino"),
                line(comm="spark"), line(comm="presto")):
        m.emit_opaque(rec)

    def v(name, **labels):
        return reg.get_sample_value(name, labels)
    assert v("s3slower_opaque_tls_connections_total", comm="java", stack="java") == 1
    assert v("s3slower_opaque_tls_bytes_total", comm="java", direction="sent") == 15
    assert v("s3slower_opaque_tls_bytes_total", comm="java", direction="received") == 20
    assert v("s3slower_opaque_tls_connections_total", comm="trino", stack="java") == 1
    assert v("s3slower_opaque_tls_connections_total", comm="__other__", stack="java") == 2
    assert v("s3slower_opaque_tls_connections_total", comm="spark", stack="java") is None


def test_json_output_prints_lines_table_does_not():
    for renderer, want in ((JsonRenderer(), 1), (TableRenderer(), 0)):
        out = io.StringIO()
        t = JsonTerminal(out, renderer)
        t.emit_opaque(line())
        t.close()
        lines = [json.loads(x) for x in out.getvalue().splitlines() if x.startswith("{")]
        assert [d["kind"] for d in lines] == ["opaque_tls"] * want
        assert t.statistics().requests == 0


def test_the_log_file_writes_lines(tmp_path):
    log = RotatingJsonLog(str(tmp_path), max_size_bytes=1 << 20, max_backups=1)
    log.emit_opaque(line())
    log.close()
    [d] = [json.loads(x) for x in (tmp_path / "s3slower.log").read_text().splitlines()]
    assert (d["kind"], d["sni"], d["bytes_received"]) == ("opaque_tls", "s3.example", 20)
