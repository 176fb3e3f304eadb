"""From wire messages to Records: collectors ▸ events ▸ connections (pure).

`Pipeline.handle(msg, now_wall_ns)` and `Pipeline.tick(now_wall_ns)` return
the records that became final (each given its `retry`, aggregator/
retries.py, in the order they finish); `handle` also returns the opaque TLS lines
(aggregator/opaque.py: `OpaqueTls`, for the sinks that take them), and both
return the multipart upload lines that end (aggregator/multipart.py:
`MultipartUpload`, after the records that end them; `tick`'s idle ones).
State is bounded: MAX_CONNECTIONS live
connections (least recently used evicted and counted), processes and
collectors forgotten when they exit or go away, and every map keyed by what
the wire says (processes, addresses, collectors, counter names) has its own
named bound.  An evicted connection's waiting requests are emitted incomplete.

Ledger members counted here (common/losses.py, SPEC §4): transport
(sequence gaps), malformed (records or messages that do not decode), the
map-full drops (conn_, process_, address_, collector_, opaque_,
multipart_ and retry_evicted), and from
each connection its parser's and stitcher's counts (stream_gap, http_invalid,
stream skipped bytes, superseded, unanswered); and, per collector, the totals
its heartbeats report (Stage.reported members), folded in when it restarts
or is forgotten, so every total only grows.
"""
from __future__ import annotations

import collections
import dataclasses
import ipaddress
import struct
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional, Union

from s3slower.aggregator import containers, errorlog
from s3slower.aggregator.correlate import Connection, Peer
from s3slower.aggregator.multipart import DEFAULT_IDLE_S, MultipartTracker, MultipartUpload
from s3slower.aggregator.opaque import OpaqueTls, OpaqueTracker, Who
from s3slower.aggregator.records import Record
from s3slower.aggregator.retries import RetryTracker
from s3slower.common.events import KIND_DATA, Direction, Kind, MalformedEvent, decode_event
from s3slower.common.losses import Loss, from_heartbeat
from s3slower.common.protocol import Message, MsgKind
from s3slower.reasons import note

MAX_CONNECTIONS = 50_000          # live connections across all collectors
# CONNECT addresses and PROCESS announcements wait for data that may never
# come (a CLOSE or EXIT lost): keep at most this many, least recent first out.
MAX_ADDRESSES = MAX_CONNECTIONS
MAX_PROCESSES = 100_000           # pid_max defaults to 4M, but busy hosts run ~10k
MAX_COLLECTORS = 10_000           # a fleet; more host names than this is garbage
MAX_COUNTER_NAMES = 64            # names in one heartbeat's stats / lost maps
DEFAULT_REQUEST_TIMEOUT_NS = 60 * 1_000_000_000
IDLE_CONNECTION_NS = 15 * 60 * 1_000_000_000
_EGRESS = int(Direction.EGRESS)     # a plain int: per record
# what handle() and tick() return, for the sinks that take each
Output = Union[Record, OpaqueTls, MultipartUpload]


@dataclass(frozen=True)
class CollectorState:
    hostname: str
    instance: int
    last_seq: int
    last_heartbeat_wall_ns: int
    lost: Mapping[str, int]
    stats: Mapping[str, int]
    said_bye: bool
    reported: Mapping[Loss, int]     # its ledger members, from its last heartbeat
    # added to `reported`: what it counted here before a move minus the totals
    # it had reported elsewhere when it moved here (a resync HELLO)
    carried: Mapping[Loss, int] = dataclasses.field(default_factory=dict)

    @property
    def counted(self) -> dict[Loss, int]:
        """Its ledger members as this aggregator counts them."""
        out = dict(self.carried)
        for m, n in self.reported.items():
            out[m] = out.get(m, 0) + n
        return out


class _Process(NamedTuple):
    """What a PROCESS announcement says that records carry."""
    labels: Mapping[str, str]
    container: Optional[containers.Container]
    tls_stack: str = "unknown"      # collector/tlsstack.py's guess, for opaque_tls lines
    comm: str = ""                  # the process's (records carry their thread's)


_UNANNOUNCED = _Process({}, None)


@dataclass(frozen=True)
class PipelineStats:
    messages: int
    events: int
    records: int
    errors: int
    connections: int
    processes: int
    losses: Mapping[Loss, int]       # the ledger members counted so far, all collectors
    collectors: tuple[CollectorState, ...]

    @property
    def lost(self) -> dict[str, int]:
        """`losses` by label."""
        return {m.label: n for m, n in self.losses.items()}


class Pipeline:
    def __init__(self, *, request_timeout_ns: int = DEFAULT_REQUEST_TIMEOUT_NS,
                 path_style_hosts: frozenset[str] = frozenset(),
                 multipart_idle_s: float = DEFAULT_IDLE_S):
        self.request_timeout_ns = request_timeout_ns
        self.path_style_hosts = path_style_hosts
        self._conns: collections.OrderedDict[tuple, Connection] = collections.OrderedDict()
        self._by_pid: dict[tuple[int, int], set[tuple]] = {}   # (instance, pid) -> conn keys
        # (instance, pid) -> its announcement; conn key -> remote address
        self._procs: collections.OrderedDict[tuple[int, int], _Process] = \
            collections.OrderedDict()
        self._addrs: collections.OrderedDict[tuple, str] = collections.OrderedDict()
        self._collectors: collections.OrderedDict[str, CollectorState] = \
            collections.OrderedDict()                     # hostname -> state
        self._lost: collections.Counter[Loss] = collections.Counter()
        self._opaque = OpaqueTracker()
        self._multipart = MultipartTracker(int(multipart_idle_s * 1e9))
        self._retries = RetryTracker()
        self._messages = self._events = self._records = self._errors = 0

    # -- messages ----------------------------------------------------------
    def handle(self, msg: Message, now_wall_ns: int) -> list[Output]:
        self._messages += 1
        self._track_sequence(msg, now_wall_ns)
        if msg.kind is MsgKind.EVENTS:
            return self._events_batch(msg)
        if msg.kind is MsgKind.PROCESS:
            pid = msg.body["pid"]
            proc = _Process(msg.body.get("labels", {}), containers.from_process(msg.body, pid),
                            str(msg.body.get("tls_stack", "unknown")),
                            str(msg.body.get("comm", "")))
            if _bounded_put(self._procs, (msg.instance, pid), proc, MAX_PROCESSES) is not None:
                self._count(Loss.PROCESS_EVICTED, f"over {MAX_PROCESSES} processes")
        return []

    def count_malformed(self, reason: str, n: int = 1) -> None:
        self._count(Loss.MALFORMED, reason, n)

    def _count(self, loss: Loss, reason: str, n: int = 1) -> None:
        self._lost[loss] += n
        note(loss, reason, n)

    def _track_sequence(self, msg: Message, now: int) -> None:
        old = self._collectors.get(msg.hostname)
        lost = old.lost if old else {}
        stats = old.stats if old else {}
        reported = old.reported if old else {}
        carried = old.carried if old else {}
        hb = old.last_heartbeat_wall_ns if old else now
        # a HELLO resynchronises: after a move between aggregators the messages
        # between went elsewhere (docs/protocol.md, "Several aggregators")
        if old is not None and old.instance == msg.instance and msg.seq > old.last_seq + 1 \
                and msg.kind is not MsgKind.HELLO:
            self._count(Loss.TRANSPORT, f"{msg.hostname}: message {msg.seq} came after "
                        f"{old.last_seq}", msg.seq - old.last_seq - 1)
        if old is not None and old.instance != msg.instance:
            # a restart: fold the old instance's totals in, start afresh
            self._lost.update(old.counted)
            old, lost, stats, reported, carried = None, {}, {}, {}, {}
        if msg.kind is MsgKind.HEARTBEAT:
            lost, stats = _counters(msg.body)
            reported = from_heartbeat(lost, stats)
            hb = now
        elif msg.kind is MsgKind.HELLO and msg.body.get("resync"):
            # moved here: count only what grows past the totals it had reported
            # to the aggregator it left, on top of what it counted here before
            before = old.counted if old is not None else {}
            reported = from_heartbeat(*_counters(msg.body))
            carried = {m: before.get(m, 0) - reported.get(m, 0)
                       for m in before.keys() | reported.keys()}
        state = CollectorState(msg.hostname, msg.instance, msg.seq, hb, lost, stats,
                               msg.kind is MsgKind.BYE, reported, carried)
        evicted = _bounded_put(self._collectors, msg.hostname, state, MAX_COLLECTORS)
        if evicted is not None:             # keep what it reported, forget the rest
            self._lost.update(evicted.counted)
            self._count(Loss.COLLECTOR_EVICTED,
                        f"{evicted.hostname} forgotten: over {MAX_COLLECTORS} collectors")

    def _events_batch(self, msg: Message) -> list[Output]:
        out: list = []
        instance = msg.instance
        conns = self._conns
        for raw in msg.body["events"]:
            try:
                ev = decode_event(raw)
            except MalformedEvent as exc:
                self._count(Loss.MALFORMED, f"{msg.hostname}: {exc}")
                continue
            self._events += 1
            key = (instance, ev.pid, ev.conn_id)
            if ev.kind == KIND_DATA:
                conn = conns.get(key)
                if conn is None:
                    conn = self._new_conn(key, msg, ev.comm, out)
                else:
                    conns.move_to_end(key)
                recs = conn.feed(ev.direction == _EGRESS, ev, ev.tid)   # an Event is a Call
                if recs:
                    out.extend(self._finished(recs, key))
            elif ev.kind == Kind.CONNECT:
                if _bounded_put(self._addrs, key, _sockaddr(ev.data),
                                MAX_ADDRESSES) is not None:
                    self._count(Loss.ADDRESS_EVICTED, f"over {MAX_ADDRESSES} addresses")
            elif ev.kind == Kind.CLOSE:
                out.extend(self._close(key, "the connection's close", reset=True))
                self._addrs.pop(key, None)
            elif ev.kind == Kind.EXIT:
                for k in list(self._by_pid.get((msg.instance, ev.pid), ())):
                    out.extend(self._close(k, "the process's exit"))
                self._procs.pop((msg.instance, ev.pid), None)
            elif ev.kind == Kind.TLS_HELLO:
                self._hello(key, ev)
            elif ev.kind == Kind.OPAQUE:
                out.extend(self._opaque_report(key, msg, ev))
        return out

    # -- opaque TLS (aggregator/opaque.py) ----------------------------------
    def _hello(self, key: tuple, ev) -> None:
        evicted = self._opaque.evicted
        self._opaque.hello(key, ev)
        if self._opaque.evicted > evicted:
            self._count(Loss.OPAQUE_EVICTED, f"over {self._opaque.max_hellos} opaque TLS "
                        "connections, the least recent forgotten")

    def _opaque_report(self, key: tuple, msg: Message, ev) -> list[OpaqueTls]:
        proc = self._procs.get((msg.instance, ev.pid), _UNANNOUNCED)
        recs = self._opaque.report(key, ev, Who(msg.hostname, msg.wall_offset_ns,
                                                self._addrs.get(key, ""), proc.tls_stack,
                                                proc.comm, proc.labels, proc.container))
        if any(r.closed for r in recs):
            self._addrs.pop(key, None)
        return recs

    def _new_conn(self, key: tuple, msg: Message, comm: str, out: list[Record]) -> Connection:
        """A connection first seen: its state, made."""
        proc = self._procs.get((msg.instance, key[1]), _UNANNOUNCED)
        peer = Peer(msg.hostname, key[1], comm, proc.labels, self._addrs.pop(key, ""),
                    proc.container)
        conn = Connection(peer, msg.wall_offset_ns, self.path_style_hosts)
        self._opaque.forget(key)            # plaintext: not opaque after all
        self._conns[key] = conn
        self._by_pid.setdefault(key[:2], set()).add(key)
        if len(self._conns) > MAX_CONNECTIONS:
            old_key = next(iter(self._conns))
            self._count(Loss.CONN_EVICTED, f"pid {old_key[1]}: over {MAX_CONNECTIONS} "
                        "connections, the least recent evicted")
            out.extend(self._close(old_key, "the connection's eviction"))
        return conn

    def _close(self, key: tuple, why: str, reset: bool = False) -> list[Record]:
        conn = self._conns.pop(key, None)
        if conn is None:
            return []
        self._forget(key)
        recs = self._finished(conn.close(why, reset), key)
        self._account(conn)
        return recs

    def _forget(self, key: tuple) -> None:
        keys = self._by_pid.get(key[:2])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_pid[key[:2]]

    def _account(self, conn: Connection) -> None:
        """A connection is gone: its counts move into the totals."""
        for loss, n in _conn_counts(conn):
            if n:
                self._count(loss, f"pid {conn.peer.pid} {conn.peer.comm!r} to "
                            f"{conn.peer.address or '?'}: {n} on one connection", n)

    def _finished(self, recs: list[Record], key: tuple) -> list:
        self._records += len(recs)
        uploads: list = []
        evicted, retry_evicted = self._multipart.evicted, self._retries.evicted
        for r in recs:
            self._retries.feed(r)
            if r.is_error:
                self._errors += 1
                errorlog.explain(r, key[2])
            if r.upload_id:
                uploads.extend(self._multipart.feed(r))
        if self._multipart.evicted > evicted:
            self._count(Loss.MULTIPART_EVICTED, f"over {self._multipart.max_open} open multipart "
                        "uploads or their parts, the least recently active forgotten",
                        self._multipart.evicted - evicted)
        if self._retries.evicted > retry_evicted:
            self._count(Loss.RETRY_EVICTED, f"over {self._retries.max_failed} failed requests "
                        "awaiting a retry, the least recent forgotten",
                        self._retries.evicted - retry_evicted)
        return recs + uploads if uploads else recs

    # -- time --------------------------------------------------------------
    def tick(self, now_wall_ns: int) -> list[Output]:
        out: list = []
        for key, conn in list(self._conns.items()):
            out.extend(self._finished(conn.expire(now_wall_ns, self.request_timeout_ns), key))
            if not conn.pending and now_wall_ns - conn.last_seen_wall_ns > IDLE_CONNECTION_NS:
                del self._conns[key]
                self._forget(key)
                self._account(conn)
        out.extend(self._multipart.expire(now_wall_ns))
        self._retries.expire(now_wall_ns)
        return out

    def statistics(self) -> PipelineStats:
        lost = collections.Counter(self._lost)
        for c in self._collectors.values():
            lost.update(c.counted)
        for conn in self._conns.values():            # live ones' counts so far
            for loss, n in _conn_counts(conn):
                lost[loss] += n
        return PipelineStats(self._messages, self._events, self._records, self._errors,
                             len(self._conns), len(self._procs), dict(lost),
                             tuple(self._collectors.values()))


def _counters(body: Mapping) -> tuple[dict[str, int], dict[str, int]]:
    """The `lost` and `stats` maps of a HEARTBEAT (or resync HELLO), bounded."""
    return (dict(list(body.get("lost", {}).items())[:MAX_COUNTER_NAMES]),
            dict(list(body.get("stats", {}).items())[:MAX_COUNTER_NAMES]))


def _conn_counts(conn: Connection) -> tuple[tuple[Loss, int], ...]:
    p = conn.parser.statistics()
    return ((Loss.STREAM_GAP, p.gaps), (Loss.HTTP_INVALID, p.invalid),
            (Loss.STREAM_SKIPPED, p.skipped_bytes), (Loss.SUPERSEDED, conn.superseded),
            (Loss.UNANSWERED, conn.unanswered))


def _bounded_put(d: collections.OrderedDict, key, value, bound: int):
    """Insert as most recent; evict and return the least recent value over bound."""
    d[key] = value
    d.move_to_end(key)
    if len(d) > bound:
        return d.popitem(last=False)[1]
    return None


def _sockaddr(data: bytes) -> str:
    """ip:port from a struct sockaddr_in / sockaddr_in6 (network byte order port)."""
    if len(data) >= 8 and data[0] == 2:           # AF_INET
        port = struct.unpack_from("!H", data, 2)[0]
        return f"{ipaddress.IPv4Address(data[4:8])}:{port}"
    if len(data) >= 24 and data[0] == 10:         # AF_INET6
        port = struct.unpack_from("!H", data, 2)[0]
        ip = ipaddress.IPv6Address(data[8:24])
        if ip.ipv4_mapped:                         # Java's IPv4 sockets are AF_INET6
            return f"{ip.ipv4_mapped}:{port}"
        return f"[{ip}]:{port}"
    return ""
