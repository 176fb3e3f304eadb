"""Property tests: random and mutated bytes and event streams never raise anything
but the project's own error types (ProtocolError, MalformedEvent) and never grow
memory without bound: every bounded structure stays within its named limit.

The default run is short; `python -m bench.fuzz --inputs 1000000` runs the same
properties for longer.
"""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golden import harness
from s3slower.aggregator import framing, heads, http1, pipeline as pipeline_mod
from s3slower.aggregator.correlate import Connection, Peer
from s3slower.aggregator.http1 import Chunk, MessageStream, Parser
from s3slower.aggregator.pipeline import Pipeline
from s3slower.common import protocol
from s3slower.common.events import MAX_CAPTURE, MalformedEvent, decode_event, encode_event
from s3slower.common.protocol import Message, MsgKind, ProtocolError

CASES = harness.all_cases()
# Fragments that steer random bytes into the parser's interesting states.
FRAGMENTS = [b"GET /b/k HTTP/1.1\r\n", b"PUT /b/k?uploads HTTP/1.1\r\n", b"HEAD / HTTP/1.0\r\n",
             b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 404 X\r\n",
             b"Content-Length: 5\r\n", b"Content-Length: -1\r\n", b"Content-Length: 99999999999\r\n",
             b"Transfer-Encoding: chunked\r\n", b"Expect: 100-continue\r\n", b"\r\n", b"\r\n\r\n",
             b"5\r\nhello\r\n", b"0\r\n\r\n", b"zz\r\n", b"\r\n0\r\n\r\n", b"<Code>X</Code>",
             b"Host: a.s3.amazonaws.com\r\n", b"\n", b"\r", b"HTTP/1.", b"GE"]
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_stream_bounds(s: MessageStream) -> None:
    assert len(s._carry) <= heads.MAX_START_LINE
    assert len(s._head) <= heads.MAX_HEAD_BYTES + MAX_CAPTURE
    assert len(s._body._line) <= framing.MAX_CHUNK_LINE + MAX_CAPTURE
    assert len(s._body.prefix) <= framing.ERROR_BODY_KEEP
    assert len(s._body._window) < len(framing.BLIND_END)
    assert s._body.count >= 0 and s.skipped_bytes >= 0


def check_parser_bounds(p: Parser) -> None:
    check_stream_bounds(p.requests)
    check_stream_bounds(p.responses)


piece = st.one_of(st.binary(max_size=64), st.sampled_from(FRAGMENTS))
call = st.tuples(st.lists(piece, max_size=8).map(b"".join), st.integers(0, 5000),
                 st.binary(max_size=16))


@SETTINGS
@given(st.lists(st.tuples(st.booleans(), call, st.sampled_from(["GET", "HEAD", "PUT", ""])),
                max_size=40))
def test_parser_takes_anything(calls):
    p = Parser()
    t = 0
    for egress, (data, hidden, tail), answering in calls:
        t += 10
        for ev in p.feed(egress, Chunk(data, len(data) + hidden, t, t + 5,
                                       tail if hidden else b""), answering):
            assert isinstance(ev, (http1.Head, http1.End, http1.Lost, http1.Progress))
        check_parser_bounds(p)
    p.close()
    p.responses.reset()
    s = p.statistics()
    assert min(s.gaps, s.invalid, s.skipped_bytes) >= 0


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(4)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i:i] = rng.choice(FRAGMENTS)
        elif op == 2:
            del b[i:i + rng.randrange(1, 32)]
        else:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(b)


def mutated_events(case, rng: random.Random) -> list:
    out = []
    for ev in case.events:
        r = rng.random()
        if r < 0.05:
            continue                                  # a lost call
        if r < 0.25 and ev.data:
            data = mutate(ev.data, rng)[:MAX_CAPTURE]
            ev = harness.replace(ev, data=data, length=max(len(data), ev.length + len(data)
                                                           - len(ev.data)))
        out.append(ev)
        if r > 0.97:
            out.append(ev)                            # a duplicated call
    if rng.random() < 0.2 and len(out) > 2:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]       # reordered
    return out


@SETTINGS
@given(st.sampled_from(CASES), st.integers(0, 2**32))
def test_mutated_golden_streams_through_the_pipeline(case, seed):
    rng = random.Random(seed)
    got = harness.run(case, mutated_events(case, rng), batch=rng.choice((1, 7, 100)))
    requests = sum(1 for ev in case.events if ev.direction == 0 and ev.kind == 1)
    assert len(got.records) <= 2 * requests + 4
    for r in got.records:
        assert r["latency_ms"] >= 0 and r["ttfb_ms"] >= 0 and r["request_size"] >= 0
    assert not got.pipeline._conns                     # all closed or expired


@SETTINGS
@given(st.lists(st.tuples(st.booleans(), call), max_size=60))
def test_connection_takes_anything(calls):
    c = Connection(Peer("h", 1, "c", {}, ""), 0)
    t = 0
    for egress, (data, hidden, tail) in calls:
        t += 10
        c.feed(egress, Chunk(data, len(data) + hidden, t, t + 5, tail), 7)
        check_parser_bounds(c.parser)
    c.expire(t + 10**12, 1)
    assert c.pending is None
    c.close()


@SETTINGS
@given(st.binary(max_size=300))
def test_decode_event_only_raises_malformed(raw):
    try:
        decode_event(raw)
    except MalformedEvent:
        pass


@SETTINGS
@given(st.sampled_from(CASES), st.integers(0, 2**32))
def test_decode_only_raises_protocol_error(case, seed):
    rng = random.Random(seed)
    evs = [encode_event(e) for e in case.events[:20]]
    for kind, body in ((MsgKind.EVENTS, {"events": evs}),
                       (MsgKind.HEARTBEAT, {"stats": {"a": 1}, "lost": {"ringbuf": 2}}),
                       (MsgKind.PROCESS, {"pid": 5, "labels": {"a": "b"}})):
        frame = protocol.encode(Message(kind, "h", 1, 0, 0, body))
        for _ in range(5):
            try:
                msg = protocol.decode(mutate(frame, rng))
            except ProtocolError:
                continue
            for raw in msg.body.get("events", ()) if msg.kind is MsgKind.EVENTS else ():
                try:
                    decode_event(raw)
                except MalformedEvent:
                    pass


@pytest.fixture
def small_limits(monkeypatch):
    for name, value in (("MAX_CONNECTIONS", 8), ("MAX_ADDRESSES", 8), ("MAX_PROCESSES", 8),
                        ("MAX_COLLECTORS", 4), ("MAX_COUNTER_NAMES", 3)):
        monkeypatch.setattr(pipeline_mod, name, value)


def test_pipeline_maps_stay_within_their_limits(small_limits):
    """A long random stream of messages from many collectors, processes and
    connections, with CLOSE and EXIT events lost: every map keeps its bound."""
    rng = random.Random(1)
    p = Pipeline()
    sources = [c for c in CASES if c.source.suffix == ".json"]
    seqs: dict[str, int] = {}
    for step in range(3000):
        host = f"h{rng.randrange(10)}"
        seqs[host] = seqs.get(host, 0) + rng.choice((1, 1, 1, 5))
        kind = rng.choice((MsgKind.EVENTS, MsgKind.EVENTS, MsgKind.PROCESS, MsgKind.HEARTBEAT))
        if kind is MsgKind.EVENTS:
            case = rng.choice(sources)
            conn, pid = rng.randrange(50), rng.randrange(30)
            evs = [harness.replace(e, conn_id=conn, pid=pid) for e in
                   case.events[:rng.randrange(1, len(case.events) + 1)] if e.kind in (1, 2)]
            body = {"events": [encode_event(e) for e in evs]}
        elif kind is MsgKind.PROCESS:
            body = {"pid": rng.randrange(10_000), "labels": {}}
        else:
            body = {"stats": {f"s{i}": i for i in range(10)},
                    "lost": {f"l{rng.randrange(100)}": 1 for _ in range(10)}}
        p.handle(Message(kind, host, 1, seqs[host], 0, body), step)
        assert len(p._conns) <= pipeline_mod.MAX_CONNECTIONS
        assert len(p._addrs) <= pipeline_mod.MAX_ADDRESSES
        assert len(p._procs) <= pipeline_mod.MAX_PROCESSES
        assert len(p._collectors) <= pipeline_mod.MAX_COLLECTORS
        assert sum(len(v) for v in p._by_pid.values()) == len(p._conns)
        for c in p._collectors.values():
            assert len(c.lost) <= 3 and len(c.stats) <= 3
    p.tick(10**20)
    assert p.statistics().lost["conn_evicted"] > 0
