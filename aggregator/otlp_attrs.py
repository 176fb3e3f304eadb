"""A request record as OpenTelemetry names it (pure: no SDK, no I/O).

The span follows the semantic conventions for AWS S3 client spans (which
extend the AWS SDK ones): name `S3.<Operation>`, kind CLIENT,
`rpc.system` aws-api, `rpc.service` S3, `rpc.method` the operation,
`aws.s3.bucket`, `aws.s3.key` (only when asked: keys are often private and
always high in cardinality), `aws.request_id` when the record has one, the
HTTP client attributes (`http.request.method`, `http.response.status_code`
when a response was seen, `server.address`, `server.port`) and `error.type`
on an error: the S3 error code (NoSuchKey), else the status code, else
`incomplete` (no whole response seen).  Where the request came from rides
along (`host.name`, `process.pid`, `process.executable.name` (the comm),
`thread.id`, `container.id`), with the body sizes.

The duration histogram (`rpc.client.call.duration`, seconds) takes only the
low-cardinality ones: no key, no request id, no pid or thread.
"""
from __future__ import annotations

from typing import Optional

from s3slower.aggregator.records import Record

SPAN_EVENT_TTFB = "ttfb"        # the response's first byte (Record.ttfb_ns after start)
ATTR_KEY = "aws.s3.key"
# what the histogram keeps of a span's attributes
METRIC_KEYS = ("rpc.system", "rpc.service", "rpc.method", "aws.s3.bucket",
               "http.request.method", "http.response.status_code", "server.address",
               "server.port", "error.type", "host.name")


def span_name(rec: Record) -> str:
    return f"S3.{rec.operation}"


def error_type(rec: Record) -> Optional[str]:
    """What went wrong, low in cardinality; None when nothing did."""
    if not rec.complete:
        return "incomplete"
    if rec.status_code >= 400:
        return rec.error_code or str(rec.status_code)
    return None


def server(endpoint: str, tls: str) -> tuple[str, int]:
    """(address, port) of `host[:port]` / `[v6][:port]`, the port by the
    scheme when the client named none."""
    host, port = endpoint, ""
    if endpoint.startswith("["):
        close = endpoint.find("]")
        host, rest = endpoint[1:close], endpoint[close + 1:]
        port = rest[1:] if rest.startswith(":") else ""
    elif endpoint.count(":") == 1:
        host, port = endpoint.split(":")
    if port.isdigit():
        return host, int(port)
    return host, 80 if tls == "none" else 443


def span_attributes(rec: Record, *, object_key: bool) -> dict:
    address, port = server(rec.endpoint, rec.tls)
    attrs = {
        "rpc.system": "aws-api", "rpc.service": "S3", "rpc.method": rec.operation,
        "http.request.method": rec.method, "server.address": address, "server.port": port,
        "host.name": rec.hostname, "process.pid": rec.pid, "thread.id": rec.tid,
        "process.executable.name": rec.comm,
        "http.request.body.size": rec.request_size,
        "http.response.body.size": rec.response_size,
    }
    if rec.bucket:
        attrs["aws.s3.bucket"] = rec.bucket
    if object_key and rec.key:
        attrs[ATTR_KEY] = rec.key
    if rec.status_code:
        attrs["http.response.status_code"] = rec.status_code
    request_id = getattr(rec, "request_id", "")
    if request_id:
        attrs["aws.request_id"] = request_id
    if rec.container is not None:
        attrs["container.id"] = rec.container.id
    err = error_type(rec)
    if err is not None:
        attrs["error.type"] = err
    return attrs


def metric_attributes(span_attrs: dict) -> dict:
    return {k: span_attrs[k] for k in METRIC_KEYS if k in span_attrs}
