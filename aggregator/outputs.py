"""Build the aggregator's outputs (sinks) from its options.

Every sink that can drop something (terminal queue, log queue, log writes, OTLP)
reports its totals as ledger sources (`Outputs.loss_sources`, for the
Aggregator's Book), so /metrics, the status line and the summary show them.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Optional

from s3slower.aggregator.logfile import RotatingJsonLog
from s3slower.aggregator.opaque_out import JsonTerminal, OpaqueMetrics, OpaqueWarnings
from s3slower.aggregator.terminal import (TerminalWriter, is_terminal, make_renderer,
                                          terminal_width, use_color)
from s3slower.aggregator.top import TopTerminal, on_stdout
from s3slower.common.config import Config, OtlpConfig
from s3slower.common.losses import Loss

_D = Config()


@dataclass(frozen=True)
class OutputOptions:
    """What the outputs take of the settings (aggregator/build.py); the
    defaults are the config's (common/config.py)."""
    output: str = _D.output
    max_url_length: int = _D.screen.max_url_length
    log_dir: Optional[str] = None          # None: no log file
    log_max_size_mb: int = _D.log.max_size_mb
    log_max_backups: int = _D.log.max_backups
    prometheus: bool = _D.prometheus.enabled
    prom_host: str = _D.prometheus.prom_exporter_host
    prom_port: int = _D.prometheus.prom_exporter_port
    extra_label_keys: tuple[str, ...] = ()
    max_buckets: int = _D.max_buckets
    container_label: bool = _D.container_label
    client_label: bool = _D.client_label
    interval_s: float = _D.interval
    otlp: OtlpConfig = _D.otlp


@dataclass
class Outputs:
    sinks: list = field(default_factory=list)
    server: object = None          # metrics_server.MetricsServer when --prometheus
    terminal: Optional[TerminalWriter | TopTerminal] = None
    metrics: object = None         # metrics.Metrics when --prometheus
    loss_sources: list = field(default_factory=list)   # () -> {Loss: total}

    def close(self) -> None:
        for s in self.sinks:
            s.close()
        if self.server is not None:
            self.server.close()


def build_outputs(opts: OutputOptions, extra_loss=()) -> Outputs:
    """`extra_loss`: callables returning more ledger totals (e.g. auth's refusals)."""
    out = Outputs(loss_sources=list(extra_loss))
    if opts.log_dir:
        log = RotatingJsonLog(opts.log_dir, max_size_bytes=opts.log_max_size_mb * 1024 * 1024,
                              max_backups=opts.log_max_backups)
        out.loss_sources.append(lambda: {Loss.LOG_QUEUE: log.statistics().records_dropped,
                                         Loss.LOG_WRITE: log.statistics().records_failed})
        out.sinks.append(log)
    if opts.output == "top":
        out.terminal = top = on_stdout(use_color(sys.stdout, os.environ))
        out.sinks.append(top)
        out.loss_sources.append(lambda: {Loss.TERMINAL: top.statistics().dropped})
    elif opts.output != "none":
        color = opts.output == "table" and use_color(sys.stdout, os.environ)
        width = terminal_width(sys.stdout, os.environ)
        renderer = make_renderer(opts.output, width=width,
                                 max_url_length=opts.max_url_length, color=color)
        in_place = opts.output == "table" and is_terminal(sys.stdout)   # the status line
        out.terminal = term = JsonTerminal(sys.stdout, renderer, in_place=in_place)
        out.sinks.append(term)
        out.loss_sources.append(lambda: {Loss.TERMINAL: term.statistics().dropped_lines})
    if opts.prometheus:
        from prometheus_client import CollectorRegistry

        from s3slower.aggregator.metrics import Metrics, MetricsSink
        from s3slower.aggregator.metrics_server import serve
        from s3slower.aggregator.multipart_out import MultipartMetrics
        from s3slower.aggregator.retries_out import RetryMetrics
        from s3slower.aggregator.throughput import OVERFLOW_LABEL, ThroughputMetrics
        registry = CollectorRegistry(auto_describe=True)
        out.metrics = Metrics(registry, extra_label_keys=opts.extra_label_keys,
                              max_buckets=opts.max_buckets, interval_s=opts.interval_s,
                              container_label=opts.container_label,
                              client_label=opts.client_label)
        sink = MetricsSink(out.metrics, registry)
        out.sinks.append(sink)
        out.sinks.append(ThroughputMetrics(
            registry, out.metrics.overflow.labels(OVERFLOW_LABEL).inc,
            client_label=opts.client_label, series_ttl_s=out.metrics.series_ttl_s))
        out.sinks.append(RetryMetrics(registry, out.metrics))
        out.sinks.append(OpaqueMetrics(registry))
        out.sinks.append(MultipartMetrics(registry, extra_label_keys=opts.extra_label_keys,
                                          container_label=opts.container_label))
        out.server = serve(registry, opts.prom_host, opts.prom_port, health=sink.health)
    if opts.otlp.enabled:                   # imports the SDK: only when on
        from s3slower.aggregator.otlp import OtlpSink
        otlp = OtlpSink(opts.otlp)
        out.sinks.append(otlp)
        out.loss_sources.append(lambda: {Loss.OTLP: otlp.lost()})
    out.sinks.append(OpaqueWarnings())
    return out
