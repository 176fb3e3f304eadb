"""The /metrics and /health HTTP endpoint (the metrics output's only I/O).

stdlib `http.server` in a daemon thread, one short-lived thread per request:
a scrape never waits on the aggregator's loop (client_python locks its own
metric children).  `/metrics` is the text exposition of the private registry
(OpenMetrics when the scraper asks for it); `/health` answers 200 "ok", and
`/health?detail` the ledger snapshot as JSON (aggregator/ledger.py).

An IPv6 host (the default "::") is bound dual-stack (IPV6_V6ONLY off), so
IPv4 scrapers reach it too.  Port 0 picks a free port; `.port` says which.
Request logging is off: the terminal table shares stderr/stdout.
"""
from __future__ import annotations

import errno
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

# A scrape taking longer than this is a stuck client, not a slow collect.
REQUEST_TIMEOUT_S = 30.0


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry          # set on the per-server subclass
    health: Optional[Callable[[], dict]] = None
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path, _, query = self.path.partition("?")
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, content_type, encoder(self.registry))
        elif path == "/health" and "detail" in parse_qs(query, keep_blank_values=True) \
                and self.health:
            body = json.dumps(self.health(), sort_keys=True).encode() + b"\n"
            self._reply(200, "application/json", body)
        elif path == "/health":
            self._reply(200, "text/plain; charset=utf-8", b"ok\n")
        elif path == "/":
            self._reply(200, "text/plain; charset=utf-8", b"s3slower: see /metrics\n")
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class MetricsServer:
    """A running endpoint: `.host`, `.port`, `.close()`."""

    def __init__(self, server: _Server, thread: threading.Thread, host: str):
        self._server = server
        self._thread = thread
        self.host = host
        self.port: int = server.server_address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def _family(host: str) -> socket.AddressFamily:
    if ":" in host:
        return socket.AF_INET6
    infos = socket.getaddrinfo(host or None, None, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    return infos[0][0]


def _make_server(host: str, port: int, handler: type) -> _Server:
    server_cls = type("MetricsHTTPServer", (_Server,), {"address_family": _family(host)})
    return server_cls((host, port), handler)


def serve(registry: CollectorRegistry, host: str, port: int,
          health: Optional[Callable[[], dict]] = None) -> MetricsServer:
    """Start serving `registry` (and `health()` at /health?detail) at host and
    port (the settings' --host/--port); raises OSError when they cannot be bound."""
    handler = type("MetricsHandler", (_Handler,),
                   {"registry": registry, "health": staticmethod(health) if health else None})
    try:
        server = _make_server(host, port, handler)
    except OSError as e:
        if host != "::" or e.errno != errno.EAFNOSUPPORT:
            raise
        host = "0.0.0.0"                    # a kernel without IPv6: any IPv4 address
        server = _make_server(host, port, handler)
    thread = threading.Thread(target=server.serve_forever, name="s3slower-metrics-http",
                              kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return MetricsServer(server, thread, host)
