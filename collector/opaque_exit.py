"""Opaque TLS connections still open when their process exits.

The kernel sends an opaque connection's counts when the process close()s it
(bpf/s3slower.bpf.c, "opaque TLS"); a process that exits with the
connection open (a client's pool of idle connections) has it closed by the
kernel itself, where no syscall tracepoint sees it.  So the collector
remembers each connection that sent a TLS_HELLO (pid, fd, connection id)
until its close (OPAQUE closed, or CLOSE for a connection a probe reads),
and at its process's EXIT reads what the kernel counted and sends the
report that close would have sent, just before the EXIT record.  It reads
headers and a map entry, never captured bytes.

At most MAX_OPEN connections are remembered (as the kernel's MAX_CONNS);
beyond, the oldest process's are forgotten (their exit goes unreported).
"""
from __future__ import annotations

from typing import Callable, Optional

from s3slower.common.events import (OPAQUE, Event, Kind, MalformedEvent, decode_event,
                                     encode_event)

MAX_OPEN = 65536

# (pid, fd, connection id) -> (bytes sent, received), the kernel's entry
# removed; None when the connection is gone or no longer opaque
ReadCounts = Callable[[int, int, int], Optional[tuple[int, int]]]


class OpenOpaque:
    def __init__(self, read: ReadCounts, max_open: int = MAX_OPEN):
        self._read = read
        self.max_open = max_open
        self._open: dict[int, dict[int, int]] = {}      # pid -> fd -> connection id
        self._n = 0
        self.forgotten = 0

    def hello(self, raw: bytes) -> None:
        ev = _decoded(raw)
        if ev is None:
            return
        fds = self._open.setdefault(ev.pid, {})
        self._n += ev.fd not in fds
        fds[ev.fd] = ev.conn_id
        while self._n > self.max_open:
            oldest = next(iter(self._open))
            self._n -= len(self._open.pop(oldest))
            self.forgotten += 1

    def closed(self, raw: bytes) -> None:
        """An OPAQUE or CLOSE record: a closed one is done with."""
        ev = _decoded(raw)
        if ev is None:
            return
        if ev.kind == Kind.OPAQUE and (len(ev.data) < OPAQUE.size
                                       or not OPAQUE.unpack_from(ev.data)[2]):
            return                                  # a report while open
        fds = self._open.get(ev.pid)
        if fds is not None and fds.get(ev.fd) == ev.conn_id:
            del fds[ev.fd]
            self._n -= 1

    def at_exit(self, raw: bytes) -> list[bytes]:
        """The close reports of the exiting process's opaque connections."""
        ex = _decoded(raw)
        if ex is None:
            return []
        fds = self._open.pop(ex.pid, {})
        self._n -= len(fds)
        out = []
        for fd, conn_id in fds.items():
            counts = self._read(ex.pid, fd, conn_id)
            if counts is not None:
                out.append(encode_event(Event(
                    conn_id, ex.end_ns, conn_id, ex.pid, ex.tid, fd, OPAQUE.size, Kind.OPAQUE,
                    0, 0, ex.comm, OPAQUE.pack(counts[0], counts[1], 1, 0), b"")))
        return out


def _decoded(raw: bytes) -> Optional[Event]:
    try:
        return decode_event(raw)
    except MalformedEvent:
        return None
