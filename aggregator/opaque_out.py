"""Where opaque TLS lines go (aggregator/opaque.py): terminal, warnings, metrics.

* `--output json` prints each line on stdout among the requests
  (`JsonTerminal`; multipart_upload lines too); the table and simple views do not, their rows stay
  requests.  The log file writes each line (RotatingJsonLog.emit_opaque).
* `OpaqueWarnings` logs one warning per process, whatever the output:
  "pid 123 (java) speaks TLS to s3.example:443 through a library s3slower
  cannot read".  It remembers at most MAX_WARNED processes (then starts
  afresh: a process may be warned of twice, never never).
* `OpaqueMetrics`: `s3slower_opaque_tls_connections_total{comm,stack}` (each
  connection once, at its first report) and
  `s3slower_opaque_tls_bytes_total{comm,direction}` (sent/received, as
  reported); at most MAX_OPAQUE_COMMS comm values, the rest `__other__`.
"""
from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter

from s3slower.aggregator.opaque import OpaqueTls
from s3slower.aggregator.records import Record
from s3slower.aggregator.terminal import JsonRenderer, TerminalWriter

MAX_WARNED = 10_000          # processes warned of, remembered
MAX_OPAQUE_COMMS = 100       # a host runs a few dozen clients
OTHER = "__other__"          # as aggregator/metrics.py

log = logging.getLogger("s3slower.opaque")


def warning_text(rec: OpaqueTls) -> str:
    where = f"{rec.sni}:{rec.endpoint.rsplit(':', 1)[-1]}" if rec.sni and rec.endpoint \
        else rec.sni or rec.endpoint or "?"
    return (f"pid {rec.pid} ({rec.comm}) speaks TLS to {where} through a library "
            f"s3slower cannot read (stack: {rec.stack})")


class JsonTerminal(TerminalWriter):
    """The terminal, which under `--output json` also prints opaque_tls lines."""

    def emit_opaque(self, rec: OpaqueTls) -> None:
        if isinstance(self.renderer, JsonRenderer):
            self._put(rec)              # JsonRenderer.render reads to_json_dict()

    emit_multipart = emit_opaque        # multipart_upload lines (aggregator/multipart.py)


class _Sink:
    def emit(self, rec: Record) -> None:
        pass

    def tick(self, snap, now_wall_ns: int) -> None:
        pass

    def close(self) -> None:
        pass


class OpaqueWarnings(_Sink):
    def __init__(self, warn=log.warning, max_warned: int = MAX_WARNED):
        self.warn = warn
        self.max_warned = max_warned
        self._warned: set[tuple[str, int, str]] = set()

    def emit_opaque(self, rec: OpaqueTls) -> None:
        who = (rec.hostname, rec.pid, rec.comm)
        if who in self._warned:
            return
        if len(self._warned) >= self.max_warned:
            self._warned.clear()
        self._warned.add(who)
        self.warn(warning_text(rec))


class OpaqueMetrics(_Sink):
    def __init__(self, registry: CollectorRegistry, max_comms: int = MAX_OPAQUE_COMMS):
        self.max_comms = max_comms
        self._comms: set[str] = set()
        self.connections = Counter("s3slower_opaque_tls_connections_total",
                                   "TLS connections no probe reads (opaque_tls lines)",
                                   ("comm", "stack"), registry=registry)
        self.bytes = Counter("s3slower_opaque_tls_bytes_total",
                             "Bytes on the wire of TLS connections no probe reads",
                             ("comm", "direction"), registry=registry)

    def _comm(self, comm: str) -> str:
        if comm in self._comms:
            return comm
        if len(self._comms) >= self.max_comms - 1:
            return OTHER
        self._comms.add(comm)
        return comm

    def emit_opaque(self, rec: OpaqueTls) -> None:
        comm = self._comm(rec.comm)
        if rec.first:
            self.connections.labels(comm, rec.stack).inc()
        self.bytes.labels(comm, "sent").inc(rec.new_sent)
        self.bytes.labels(comm, "received").inc(rec.new_received)
