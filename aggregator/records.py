"""The S3 request record: what every output (json, table, log, metrics) shows.

SPEC §6 names the JSON keys; `to_json_dict` is the single place that spells
them (keys after `labels` were added later: size, client, request ids,
region, retry), and `to_json` the single place that writes a record as JSON text (the
terminal's `--output json`, the log file); `--output simple` reads the dict.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Mapping, Optional

from s3slower.aggregator.containers import Container
from s3slower.aggregator.sizes import size_class


# slots, not frozen: a frozen dataclass's __init__ costs ~1 µs more per
# instance on the per-event path.  Treated as immutable all the same.
@dataclass(slots=True)
class Record:
    start_wall_ns: int          # request start (SPEC §5), wall clock ns
    hostname: str
    pid: int
    tid: int
    comm: str
    method: str
    operation: str              # AWS API name or "Unknown"
    bucket: str
    key: str
    endpoint: str               # host[:port] the client addressed
    path: str                   # request target with query values redacted
    status_code: int            # 0 when no response was seen
    error_code: str             # S3 XML <Code>, "" when none captured
    request_size: int           # body bytes sent (decoded for aws-chunked)
    response_size: int          # body bytes received
    ttfb_ns: int                # first byte of the final response - start
    latency_ns: int             # last byte of the response - start
    tls: str                    # openssl|gnutls|nss|go|s2n|none
    complete: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    container: Optional[Container] = None   # None: the process is not in a container
    why_incomplete: str = ""    # what ended it, when not complete (--debug only)
    upload_id: str = ""         # a multipart upload's (aggregator/multipart.py), not output
    part_number: int = 0        # UploadPart's, UploadPartCopy's
    client: str = ""            # aggregator/useragent.py's name, "other" when unknown
    client_version: str = ""
    request_id: str = ""        # x-amz-request-id (x-amzn-requestid first, as botocore)
    extended_request_id: str = ""   # x-amz-id-2 of the response
    region: str = ""            # aggregator/regions.py, "" when not known
    send_ns: int = 0            # the request's last byte - start (0: not sent whole)
    attempt: int = 0            # amz-sdk-request's attempt=N, 0 when not sent; not output
    reset: bool = False         # incomplete: its connection closed with it outstanding
    retry: int = 0              # 0: a first attempt (aggregator/retries.py)

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400 or not self.complete

    @property
    def latency_ms(self) -> float:
        return self.latency_ns / 1e6

    @property
    def ttfb_ms(self) -> float:
        return self.ttfb_ns / 1e6

    @property
    def size_class(self) -> str:
        return size_class(self.request_size + self.response_size)

    @property
    def container_id(self) -> str:
        return self.container.id if self.container else ""

    def to_json_dict(self) -> dict:
        """A process in a container adds `cgroup`, `container_id` and
        `container_pid`; any other leaves all three out (docs/containers.md)."""
        d = {
            "timestamp": rfc3339(self.start_wall_ns),
            "hostname": self.hostname,
            "pid": self.pid,
            "tid": self.tid,
            "comm": self.comm,
            "method": self.method,
            "operation": self.operation,
            "bucket": self.bucket,
            "key": self.key,
            "endpoint": self.endpoint,
            "path": self.path,
            "status_code": self.status_code,
            "is_error": self.is_error,
            "error_code": self.error_code,
            "request_size": self.request_size,
            "response_size": self.response_size,
            "ttfb_ms": round(self.ttfb_ms, 3),
            "latency_ms": round(self.latency_ms, 3),
            "tls": self.tls,
            "complete": self.complete,
            "labels": dict(self.labels),
            "size_class": self.size_class,
            "client": self.client,
            "client_version": self.client_version,
            "request_id": self.request_id,
            "extended_request_id": self.extended_request_id,
            "region": self.region,
            "retry": self.retry,
        }
        if self.container is not None:
            d.update(self.container.json_keys())
        return d


def to_json(rec: Record, *, compact: bool = False) -> str:
    """One line of JSON: `--output json` as json.dumps spaces it, the log file
    compact (no spaces after separators)."""
    return json.dumps(rec.to_json_dict(), separators=(",", ":") if compact else None)


def rfc3339(wall_ns: int) -> str:
    t = _dt.datetime.fromtimestamp(wall_ns // 1_000_000_000, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{wall_ns % 1_000_000_000 // 1000:06d}Z"
