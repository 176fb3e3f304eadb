"""OTLP out: a span per request and the request-duration histogram, sent with
the OpenTelemetry SDK's OTLP exporters (http/protobuf or gRPC).

Invariants
* Never blocks the pipeline.  `emit` makes the span and hands it to a
  BatchSpanProcessor, whose thread exports; the histogram is recorded in
  memory and a PeriodicExportingMetricReader's thread exports it.  `close()`
  waits at most CLOSE_S + GIVE_UP_S.
* Bounded: at most `max_queued_spans` spans are between `emit` and the end of
  their export (queued, or in an export in flight).  A span past the bound is
  not made: dropped and counted.  The processor's own queue has the same
  bound, so it never drops one we did not count.
* Every span given up on is counted (`lost()`, ledger member `otlp`): dropped
  at the bound, part of an export that failed (receiver down, refusing, or
  slower than EXPORT_TIMEOUT_S), or unsent when `close()` gave up.  A failed
  metric export loses nothing: the histogram is cumulative and the next
  export that succeeds carries every count (`statistics()` counts them).
* One warning line when a signal's exports start failing, one when they work
  again; the SDK's own log lines show under --debug only.
* Spans are only made for requests: the aggregator gives opaque TLS lines to
  sinks with `emit_opaque`, which this one has not.  The histogram, like the
  Prometheus one, observes complete requests only.
* This module imports an optional extra (pip install 's3slower[otlp]'): the
  aggregator imports it only when OTLP is on (preload.OPTIONAL_MODULES); a
  missing package is one line (OtlpUnavailable) naming what to install.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import threading
from dataclasses import dataclass

from s3slower import __version__
from s3slower.aggregator.metrics import LATENCY_BUCKETS_MS
from s3slower.aggregator.otlp_attrs import (SPAN_EVENT_TTFB, metric_attributes,
                                            span_attributes, span_name)
from s3slower.aggregator.records import Record
from s3slower.common.otlpconfig import OtlpConfig
from s3slower.common.validate import ConfigError

SDK_PACKAGE = "opentelemetry-sdk"
EXPORTER_PACKAGES = {"http/protobuf": "opentelemetry-exporter-otlp-proto-http",
                     "grpc": "opentelemetry-exporter-otlp-proto-grpc"}


class OtlpUnavailable(ConfigError):
    """OTLP is configured, but a package it needs is not installed."""

    def __init__(self, package: str, exc: ImportError):
        super().__init__("otlp", "", f"OTLP export needs the Python package {package} "
                         f"(pip install 's3slower[otlp]', or the distribution's package): {exc}")


try:
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import (AggregationTemporality, MetricExporter,
                                                  MetricExportResult,
                                                  PeriodicExportingMetricReader)
    from opentelemetry.sdk.metrics.view import View
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (BatchSpanProcessor, SpanExporter,
                                                SpanExportResult)
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as _exc:
    raise OtlpUnavailable(SDK_PACKAGE, _exc) from _exc

log = logging.getLogger("s3slower.otlp")

DURATION = "rpc.client.call.duration"       # semconv: seconds, = the span's duration
DURATION_BUCKETS_S = tuple(ms / 1000 for ms in LATENCY_BUCKETS_MS)   # as /metrics
# Attribute sets the histogram keeps; past it the SDK folds the rest into one
# set marked otel.metric.overflow (a fleet: hosts x operations x buckets).
MAX_ATTRIBUTE_SETS = 20_000
EXPORT_TIMEOUT_S = 10.0          # one export, retries included (the SDK's default)
BATCH_SPANS = 512                # spans per export request (the SDK's default)
SCHEDULE_DELAY_MS = 1000         # a span waits at most this long for its batch
# close(): time to send what is queued, then to stop the exports still trying;
# together well inside the 5 s `run` gives its aggregator child after BYE.
CLOSE_S = 2.0
GIVE_UP_S = 1.0
EXPORTERS = {   # protocol -> module of OTLPSpanExporter and OTLPMetricExporter, by signal
    "http/protobuf": ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                      "opentelemetry.exporter.otlp.proto.http.metric_exporter"),
    "grpc": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
             "opentelemetry.exporter.otlp.proto.grpc.metric_exporter"),
}
# what each protocol's exporters import inside their functions
LAZY_TRANSPORT = {"http/protobuf": ("requests",), "grpc": ("grpc",)}


def load_exporters(protocol: str) -> tuple[type, type]:
    """(OTLPSpanExporter, OTLPMetricExporter) of `protocol`; OtlpUnavailable
    when its package is missing.  The aggregator calls it before it drops root,
    so it also imports what the exporters import only on first use (their
    transport: LAZY_TRANSPORT) while the checkout is still readable."""
    from s3slower.preload import import_tree
    try:
        spans, metrics = (importlib.import_module(m) for m in EXPORTERS[protocol])
        for package in LAZY_TRANSPORT[protocol]:
            import_tree(package)
    except ImportError as exc:
        raise OtlpUnavailable(EXPORTER_PACKAGES[protocol], exc) from exc
    return spans.OTLPSpanExporter, metrics.OTLPMetricExporter


@dataclass(frozen=True)
class OtlpStatistics:
    spans_made: int            # handed to the processor
    spans_exported: int        # in exports that succeeded
    spans_failed: int          # in exports that failed
    spans_dropped: int         # not made: max_queued_spans were under way
    spans_unsent: int          # still under way when close() gave up
    metric_exports_failed: int


class _Exports:
    """One signal's export outcomes, counted by the exporting thread."""

    def __init__(self, inner, what: str, url: str):
        self.inner, self.what, self.url = inner, what, url
        self.ok = self.failed = self.failures = 0   # items, items, export calls
        self.failing = False                        # the last export failed
        self.warned = False                         # the main thread said so
        self.given_up = False
        self._shut = False

    def done(self, n: int, ok: bool) -> None:
        if ok:
            self.ok += n
        else:
            self.failed += n
            self.failures += 1
        self.failing = not ok

    def give_up(self, timeout_ms: float) -> None:
        """Exports from now on fail at once; one in flight stops retrying."""
        self.given_up = True
        self.shutdown(timeout_ms)

    def shutdown(self, timeout_ms: float) -> None:
        if not self._shut:
            self._shut = True
            takes = "timeout_millis" in inspect.signature(self.inner.shutdown).parameters
            self.inner.shutdown(**({"timeout_millis": timeout_ms} if takes else {}))

    def warn_on_change(self, consequence: str) -> None:
        """Called by the main thread each tick: one line per change of state."""
        if self.failing and not self.warned:
            log.warning("OTLP %s export to %s failed; %s (--debug shows why)", self.what,
                        self.url, consequence)
        elif self.warned and not self.failing:
            log.warning("OTLP %s export to %s works again", self.what, self.url)
        self.warned = self.failing


class _CountingSpanExporter(SpanExporter):
    def __init__(self, exports: _Exports):
        self.exports = exports

    def export(self, spans) -> SpanExportResult:
        ok = False
        try:
            if not self.exports.given_up:
                ok = self.exports.inner.export(spans) is SpanExportResult.SUCCESS
        finally:                    # an exception the processor logs is a failure too
            self.exports.done(len(spans), ok)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self, timeout_millis: float = CLOSE_S * 1000) -> None:
        self.exports.shutdown(timeout_millis)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _CountingMetricExporter(MetricExporter):
    def __init__(self, exports: _Exports, temporality: dict):
        super().__init__(preferred_temporality=temporality)
        self.exports = exports

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):
        ok = False
        try:
            if not self.exports.given_up:
                ok = self.exports.inner.export(metrics_data, timeout_millis=timeout_millis) \
                    is MetricExportResult.SUCCESS
        finally:
            self.exports.done(1, ok)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = CLOSE_S * 1000, **kwargs) -> None:
        self.exports.shutdown(timeout_millis)


class OtlpSink:
    def __init__(self, cfg: OtlpConfig):
        span_cls, metric_cls = load_exporters(cfg.protocol)
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)   # ours say it
        self.cfg = cfg
        self.max_queued = cfg.max_queued_spans
        self.made = self.dropped = 0
        self.closed = False
        resource = Resource.create({"service.name": "s3slower", "service.version": __version__})
        grpc = cfg.protocol == "grpc"
        where = {"insecure": cfg.url.startswith("http://")} if grpc else {}
        self._tracer = self._spans = self._processor = None
        self._meter_provider = self._histogram = self._metrics = None
        if cfg.spans:
            url = cfg.url if grpc else cfg.url + "/v1/traces"
            self._spans = _Exports(span_cls(endpoint=url, timeout=EXPORT_TIMEOUT_S, **where),
                                   "spans", url)
            self._processor = BatchSpanProcessor(
                _CountingSpanExporter(self._spans), max_queue_size=self.max_queued,
                schedule_delay_millis=SCHEDULE_DELAY_MS,
                max_export_batch_size=min(BATCH_SPANS, self.max_queued))
            provider = TracerProvider(resource=resource, sampler=ALWAYS_ON,
                                      shutdown_on_exit=False)
            provider.add_span_processor(self._processor)
            self._tracer = provider.get_tracer("s3slower", __version__)
        if cfg.metrics:
            url = cfg.url if grpc else cfg.url + "/v1/metrics"
            temporality = {Histogram: AggregationTemporality.CUMULATIVE}
            self._metrics = _Exports(metric_cls(endpoint=url, timeout=EXPORT_TIMEOUT_S,
                                                preferred_temporality=temporality, **where),
                                     "metrics", url)
            reader = PeriodicExportingMetricReader(
                _CountingMetricExporter(self._metrics, temporality),
                export_interval_millis=cfg.metrics_interval * 1000,
                export_timeout_millis=EXPORT_TIMEOUT_S * 1000)
            self._meter_provider = MeterProvider(
                metric_readers=[reader], resource=resource, shutdown_on_exit=False,
                views=[View(instrument_name=DURATION,
                            aggregation_cardinality_limit=MAX_ATTRIBUTE_SETS)])
            self._histogram = self._meter_provider.get_meter("s3slower", __version__) \
                .create_histogram(DURATION, unit="s", description="S3 request duration",
                                  explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S)

    # -- the sink (aggregator/service.py) --------------------------------------------

    def emit(self, rec: Record) -> None:
        attrs = span_attributes(rec, object_key=self.cfg.object_key)
        if self._tracer is not None:
            self._span(rec, attrs)
        if self._histogram is not None and rec.complete:
            self._histogram.record(rec.latency_ns / 1e9, metric_attributes(attrs))

    def _span(self, rec: Record, attrs: dict) -> None:
        if self.made - self._spans.ok - self._spans.failed >= self.max_queued:
            self.dropped += 1
            return
        start = rec.start_wall_ns
        span = self._tracer.start_span(span_name(rec), kind=SpanKind.CLIENT,
                                       attributes=attrs, start_time=start)
        if rec.status_code:
            span.add_event(SPAN_EVENT_TTFB, timestamp=start + rec.ttfb_ns)
        if "error.type" in attrs:
            span.set_status(Status(StatusCode.ERROR))
        self.made += 1
        span.end(end_time=start + rec.latency_ns)

    def tick(self, snap, now_wall_ns: int) -> None:
        if self._spans is not None:
            self._spans.warn_on_change("spans are dropped and counted "
                                       "(s3slower_events_lost_total{source=\"otlp\"})")
        if self._metrics is not None:
            self._metrics.warn_on_change("the histogram goes with the next export that works")

    def close(self) -> None:
        """Send what is queued (at most CLOSE_S), then stop (GIVE_UP_S)."""
        if self.closed:
            return
        stopper = threading.Thread(target=self._shutdown, name="otlp-close", daemon=True)
        stopper.start()
        stopper.join(CLOSE_S)
        if stopper.is_alive():
            for exports in (self._spans, self._metrics):
                if exports is not None:
                    exports.give_up(GIVE_UP_S * 1000)
            stopper.join(GIVE_UP_S)
        self.closed = True

    def _shutdown(self) -> None:
        if self._processor is not None:
            self._processor.shutdown()
        if self._meter_provider is not None:
            self._meter_provider.shutdown(timeout_millis=CLOSE_S * 1000)

    # -- counts ----------------------------------------------------------------------

    def statistics(self) -> OtlpStatistics:
        s, m = self._spans, self._metrics
        ok, failed = (s.ok, s.failed) if s else (0, 0)
        return OtlpStatistics(
            spans_made=self.made, spans_exported=ok, spans_failed=failed,
            spans_dropped=self.dropped,
            spans_unsent=self.made - ok - failed if self.closed else 0,
            metric_exports_failed=m.failures if m else 0)

    def lost(self) -> int:
        """Spans given up on so far (the ledger's `otlp`)."""
        st = self.statistics()
        return st.spans_dropped + st.spans_failed + st.spans_unsent
