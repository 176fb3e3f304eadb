"""The `otlp:` section of s3slower.yaml: OpenTelemetry export (pure).

Off by default.  On, the aggregator sends one span per request and the
request-duration histogram to an OTLP receiver (aggregator/otlp.py,
docs/otlp.md).  `endpoint` is the receiver's base URL, as OTLP's
OTEL_EXPORTER_OTLP_ENDPOINT is: http/protobuf posts to ENDPOINT/v1/traces and
ENDPOINT/v1/metrics; gRPC dials HOST:PORT (a path is ignored).  http:// is plain
text, https:// TLS.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

from s3slower.common.validate import Where, boolean, choice, integer, number, section

PROTOCOLS = ("http/protobuf", "grpc")          # OTEL_EXPORTER_OTLP_PROTOCOL's values
DEFAULT_ENDPOINTS = {"http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"}
# Spans held while the receiver is slow or away: a few seconds of a busy host
# (3-8k requests/s); beyond it a span is dropped and counted, never waited for.
DEFAULT_MAX_QUEUED_SPANS = 8192
MAX_QUEUED_SPANS = 1_000_000        # ~1 KiB each: a GiB
MIN_METRICS_INTERVAL_S = 0.1
MAX_METRICS_INTERVAL_S = 3600.0


@dataclass(frozen=True)
class OtlpConfig:
    enabled: bool = False                   # --otlp
    endpoint: Optional[str] = None          # --otlp-endpoint; None: DEFAULT_ENDPOINTS
    protocol: str = "http/protobuf"         # --otlp-protocol
    spans: bool = True                      # one span per request
    metrics: bool = True                    # the request-duration histogram
    object_key: bool = False                # --otlp-object-key: spans carry aws.s3.key
    max_queued_spans: int = DEFAULT_MAX_QUEUED_SPANS
    metrics_interval: float = 10.0          # seconds between histogram exports

    @property
    def url(self) -> str:
        """The receiver's base URL, without a trailing slash."""
        return (self.endpoint or DEFAULT_ENDPOINTS[self.protocol]).rstrip("/")


def parse_otlp(value: object, where: Where) -> OtlpConfig:
    m: Mapping[str, Any] = section(value, where, tuple(f.name for f in fields(OtlpConfig)))
    d = OtlpConfig()

    def opt(key, default, check):
        return default if m.get(key) is None else check(m[key], where.at(key))

    cfg = OtlpConfig(
        enabled=opt("enabled", d.enabled, boolean),
        endpoint=opt("endpoint", None, otlp_endpoint),
        protocol=opt("protocol", d.protocol, lambda v, w: choice(v, w, PROTOCOLS)),
        spans=opt("spans", d.spans, boolean),
        metrics=opt("metrics", d.metrics, boolean),
        object_key=opt("object_key", d.object_key, boolean),
        max_queued_spans=opt("max_queued_spans", d.max_queued_spans,
                             lambda v, w: integer(v, w, 1, MAX_QUEUED_SPANS)),
        metrics_interval=opt("metrics_interval", d.metrics_interval,
                             lambda v, w: number(v, w, MIN_METRICS_INTERVAL_S,
                                                 MAX_METRICS_INTERVAL_S)))
    if cfg.enabled and not (cfg.spans or cfg.metrics):
        raise where.error("enabled, but spans and metrics are both false; turn one on")
    return cfg


def otlp_endpoint(value: object, where: Where) -> str:
    """An http:// or https:// URL naming a host (the file's key and --otlp-endpoint)."""
    ok = isinstance(value, str)
    if ok:
        try:
            url = urllib.parse.urlsplit(value)
            ok = url.scheme in ("http", "https") and bool(url.hostname) and url.port != 0 \
                and not url.query and not url.fragment
        except ValueError:          # a port out of range or not a number
            ok = False
    if not ok:
        raise where.bad("an http:// or https:// URL of an OTLP receiver "
                        "(e.g. http://otel-collector:4318)", value)
    return value
