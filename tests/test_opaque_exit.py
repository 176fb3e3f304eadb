"""The collector's reports of opaque connections open at their process's exit
(collector/opaque_exit.py), with the kernel's counts read by a stand-in."""
from __future__ import annotations

from s3slower.collector.opaque_exit import OpenOpaque
from s3slower.common.events import OPAQUE, Event, Kind, decode_event, encode_event


def rec(kind: Kind, fd: int, conn: int, pid: int = 10, data: bytes = b"") -> bytes:
    return encode_event(Event(5, 900, conn, pid, pid, fd, len(data), kind, 0, 0, "java",
                              data, b""))


def test_open_connections_are_read_at_exit_closed_ones_are_not():
    reads = []
    o = OpenOpaque(lambda *k: reads.append(k) or None)      # None: no longer opaque
    for fd, conn in ((3, 111), (4, 222), (5, 333)):
        o.hello(rec(Kind.TLS_HELLO, fd, conn))
    o.closed(rec(Kind.OPAQUE, 4, 222, data=OPAQUE.pack(1, 2, 0, 0)))   # a report while open
    o.closed(rec(Kind.OPAQUE, 5, 333, data=OPAQUE.pack(1, 2, 1, 0)))   # closed
    assert o.at_exit(rec(Kind.EXIT, -1, 0)) == []
    assert reads == [(10, 3, 111), (10, 4, 222)]


def test_reports_carry_the_kernel_counts_in_hello_order():
    o = OpenOpaque(lambda pid, fd, conn: (fd * 100, fd * 1000))
    o.hello(rec(Kind.TLS_HELLO, 3, 111))
    o.hello(rec(Kind.TLS_HELLO, 4, 222))
    o.closed(rec(Kind.CLOSE, 4, 222))
    o.hello(rec(Kind.TLS_HELLO, 9, 999, pid=11))
    [r] = [decode_event(x) for x in o.at_exit(rec(Kind.EXIT, -1, 0))]
    assert (r.kind, r.pid, r.fd, r.conn_id, r.start_ns, r.end_ns, r.comm) == \
        (Kind.OPAQUE, 10, 3, 111, 111, 900, "java")
    assert OPAQUE.unpack(r.data) == (300, 3000, 1, 0)
    assert o.at_exit(rec(Kind.EXIT, -1, 0)) == []                  # forgotten
    assert len(o.at_exit(rec(Kind.EXIT, -1, 0, pid=11))) == 1


def test_bounded_oldest_process_forgotten():
    o = OpenOpaque(lambda *k: (1, 1), max_open=2)
    o.hello(rec(Kind.TLS_HELLO, 3, 1, pid=1))
    o.hello(rec(Kind.TLS_HELLO, 3, 2, pid=2))
    o.hello(rec(Kind.TLS_HELLO, 4, 3, pid=2))
    assert o.forgotten == 1
    assert o.at_exit(rec(Kind.EXIT, -1, 0, pid=1)) == []
    assert len(o.at_exit(rec(Kind.EXIT, -1, 0, pid=2))) == 2


def test_malformed_records_are_ignored():
    o = OpenOpaque(lambda *k: (1, 1))
    o.hello(b"junk")
    o.closed(b"junk")
    assert o.at_exit(b"junk") == []
