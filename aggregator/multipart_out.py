"""The metrics of multipart upload lines (aggregator/multipart.py).

* `s3slower_multipart_uploads_total{...,result}`: every upload that ended,
  by `result` (completed, aborted, abandoned, failed);
* `s3slower_multipart_upload_duration_ms{...}`: how long the completed ones
  took, first request's start to the Complete's answer.

Their labels are the request series' (aggregator/metrics.py) less
`s3_operation`: hostname, comm, bucket, endpoint, the targets' prom_labels
keys, and `container_id` when asked for; never the upload id.  Bounded: at
most MAX_UPLOAD_LABEL_SETS label sets, the rest counted under one set of
`__other__` values.  (Uploads are few next to requests: a cap on the sets
is enough, no per-label caps nor expiry.)
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from s3slower.aggregator.metrics import CONTAINER_LABEL, OTHER
from s3slower.aggregator.multipart import MultipartUpload

UPLOAD_BUCKETS_MS = (100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 900000,
                     3600000)
LABELS = ("hostname", "comm", "bucket", "endpoint")
MAX_UPLOAD_LABEL_SETS = 10_000


class MultipartMetrics:
    """A sink of multipart upload lines (the aggregator's `emit_multipart`)."""

    def __init__(self, registry: CollectorRegistry, *, extra_label_keys: tuple[str, ...] = (),
                 container_label: bool = False, max_sets: int = MAX_UPLOAD_LABEL_SETS):
        self.extra_label_keys = tuple(extra_label_keys)
        self.container_label = container_label
        self.max_sets = max_sets
        names = LABELS + self.extra_label_keys + ((CONTAINER_LABEL,) if container_label else ())
        self._sets: set[tuple[str, ...]] = set()
        self.uploads = Counter("s3slower_multipart_uploads_total",
                               "Multipart uploads ended, by result", names + ("result",),
                               registry=registry)
        self.duration = Histogram("s3slower_multipart_upload_duration_ms",
                                  "Completed multipart uploads: first request to the "
                                  "Complete's answer (ms)", names, buckets=UPLOAD_BUCKETS_MS,
                                  registry=registry)

    def _labels(self, up: MultipartUpload) -> tuple[str, ...]:
        ls = (up.hostname, up.comm, up.bucket, up.endpoint) + \
            tuple(str(up.labels.get(k, "")) for k in self.extra_label_keys)
        if self.container_label:
            ls += (up.container.id if up.container else "",)
        if ls in self._sets:
            return ls
        if len(self._sets) >= self.max_sets - 1:
            return (OTHER,) * len(ls)
        self._sets.add(ls)
        return ls

    def emit_multipart(self, up: MultipartUpload) -> None:
        ls = self._labels(up)
        self.uploads.labels(*ls, up.result).inc()
        if up.result == "completed":
            self.duration.labels(*ls).observe(up.duration_ms)

    def emit(self, rec) -> None:
        pass

    def tick(self, snap, now_wall_ns: int) -> None:
        pass

    def close(self) -> None:
        pass
