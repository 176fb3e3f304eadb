"""The aggregator half built from its settings: pipeline, outputs, the loop.

`build()` is called after the process dropped root (log files and the
metrics port are opened as the service user); the subscriber (None when
replaying a recording) and the targets' label keys come from the caller,
who read them while it still could.
"""
from __future__ import annotations

from typing import Optional

from s3slower.aggregator.outputs import OutputOptions, Outputs, build_outputs
from s3slower.aggregator.pipeline import Pipeline
from s3slower.aggregator.service import Aggregator
from s3slower.aggregator.subscriber import Subscriber
from s3slower.common.losses import Loss
from s3slower.common.settings import Settings


def build(settings: Settings, subscriber: Optional[Subscriber],
          extra_label_keys: tuple[str, ...]) -> tuple[Aggregator, Outputs]:
    c = settings.config
    opts = OutputOptions(
        output=c.output, max_url_length=c.screen.max_url_length,
        log_dir=c.log.dir if c.log.enabled else None, log_max_size_mb=c.log.max_size_mb,
        log_max_backups=c.log.max_backups, prometheus=c.prometheus.enabled,
        prom_host=c.prometheus.prom_exporter_host, prom_port=c.prometheus.prom_exporter_port,
        extra_label_keys=extra_label_keys, max_buckets=c.max_buckets,
        container_label=c.container_label, client_label=c.client_label,
        interval_s=c.interval, otlp=c.otlp)
    refused = [lambda: {Loss.COLLECTORS_REFUSED: subscriber.refused()}] if subscriber else []
    outputs = build_outputs(opts, refused)
    pipeline = Pipeline(path_style_hosts=frozenset(c.path_style_endpoints),
                        multipart_idle_s=c.multipart_idle_s)
    return Aggregator(subscriber, pipeline, outputs.sinks, min_latency_ms=c.min_latency_ms,
                      loss_sources=outputs.loss_sources), outputs
