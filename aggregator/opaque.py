"""Opaque TLS: connections s3slower sees but cannot read (pure).

The kernel marks a connection whose first bytes are a TLS record written
outside any probed TLS call (bpf/s3slower.bpf.c, "opaque TLS"): it sends
those bytes once (TLS_HELLO), then its byte counts at close and every 10 s
while open (OPAQUE).  A probed library's first call on such a connection
ends that, silently: its plaintext then comes as DATA records, and the
first of them forgets the hello here (`Pipeline._conn`).  Each OPAQUE
record becomes one `OpaqueTls` line (`"kind": "opaque_tls"`); a long
connection gives one line per report, `"open": true` until the last.

Bounds: hellos waiting for their report or their first DATA record (the
latter is every probed TLS connection's fate), at most MAX_OPAQUE, least
recent first out (counted: `opaque_evicted`, like the other map-full drops).
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple, Optional

from s3slower.aggregator.clienthello import server_name
from s3slower.aggregator.containers import Container
from s3slower.aggregator.records import rfc3339
from s3slower.common.events import OPAQUE, Event

KIND = "opaque_tls"
STACKS = ("rustls", "java", "unknown")      # collector/tlsstack.py's guesses
MAX_OPAQUE = 50_000                          # as pipeline.MAX_CONNECTIONS


@dataclass(frozen=True)
class OpaqueTls:
    """One report of a TLS connection no probe reads (docs/opaque-tls.md)."""
    start_wall_ns: int          # the connect(), wall clock
    hostname: str
    pid: int
    comm: str
    endpoint: str               # ip:port from connect()
    sni: str                    # from the ClientHello, "" when it named none
    stack: str                  # one of STACKS
    bytes_sent: int             # on the wire (TLS records), so far
    bytes_received: int
    duration_ns: int            # connect() to this report
    closed: bool                # False: a report while open
    new_sent: int = 0           # bytes since this connection's previous report
    new_received: int = 0
    first: bool = True          # this connection's first report
    labels: Mapping[str, str] = field(default_factory=dict)
    container: Optional[Container] = None

    def to_json_dict(self) -> dict:
        d = {
            "kind": KIND,
            "timestamp": rfc3339(self.start_wall_ns),
            "hostname": self.hostname,
            "pid": self.pid,
            "comm": self.comm,
            "endpoint": self.endpoint,
            "sni": self.sni,
            "stack": self.stack,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "duration_ms": round(self.duration_ns / 1e6, 3),
            "open": not self.closed,
            "labels": dict(self.labels),
        }
        if self.container is not None:
            d.update(self.container.json_keys())
        return d


class Who(NamedTuple):
    """What the pipeline knows of the connection's side."""
    hostname: str
    wall_offset_ns: int
    endpoint: str
    stack: str
    comm: str           # the process's, "" when not announced (then the thread's)
    labels: Mapping[str, str]
    container: Optional[Container]


class _Seen(NamedTuple):
    sni: str
    comm: str
    sent: int           # counts of the previous report (0, 0 before the first)
    received: int
    reported: bool


class OpaqueTracker:
    def __init__(self, max_hellos: int = MAX_OPAQUE):
        self.max_hellos = max_hellos
        self._seen: collections.OrderedDict[tuple, _Seen] = collections.OrderedDict()
        self.evicted = 0

    def hello(self, key: tuple, ev: Event) -> None:
        self._put(key, _Seen(server_name(ev.data), ev.comm, 0, 0, False))

    def forget(self, key: tuple) -> None:
        """A plaintext record came: a probe reads this connection."""
        self._seen.pop(key, None)

    def report(self, key: tuple, ev: Event, who: Who) -> list[OpaqueTls]:
        if len(ev.data) < OPAQUE.size:
            return []
        sent, received, closed, _ = OPAQUE.unpack_from(ev.data)
        seen = self._seen.pop(key, None) or _Seen("", ev.comm, 0, 0, False)
        if not closed:
            self._put(key, seen._replace(sent=sent, received=received, reported=True))
        return [OpaqueTls(ev.start_ns + who.wall_offset_ns, who.hostname, ev.pid,
                          who.comm or seen.comm,
                          who.endpoint, seen.sni, who.stack if who.stack in STACKS else "unknown",
                          sent, received, max(0, ev.end_ns - ev.start_ns), bool(closed),
                          max(0, sent - seen.sent), max(0, received - seen.received),
                          not seen.reported, who.labels, who.container)]

    def _put(self, key: tuple, seen: _Seen) -> None:
        self._seen[key] = seen
        self._seen.move_to_end(key)
        if len(self._seen) > self.max_hellos:
            self._seen.popitem(last=False)
            self.evicted += 1

    def __len__(self) -> int:
        return len(self._seen)
