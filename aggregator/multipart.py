"""Multipart uploads: their requests joined into one line each (pure).

CreateMultipartUpload (whose answer names the UploadId: the kernel copies a
small answer to a POST, bpf/s3slower.bpf.c "framing"), UploadPart and
UploadPartCopy (`uploadId` in their query) and CompleteMultipartUpload /
AbortMultipartUpload are joined by (hostname, pid, endpoint, bucket, key,
upload id): across the connections and threads of one process, in whatever
order their records finish.  When an upload ends, one `MultipartUpload`
line (`"kind": "multipart_upload"`, docs/multipart.md):

  * completed  CompleteMultipartUpload answered 2xx, not an <Error> body;
  * aborted    AbortMultipartUpload answered (2xx, or 404: it is gone);
  * failed     CompleteMultipartUpload failed: at once when the upload is
               gone (404), else at the abort, or the idle time, that follows
               (a Complete retried and answered 2xx is still `completed`);
  * abandoned  no request of it for `idle_ns` (the config's multipart_idle_s).

`parts`, `bytes`, `part_size_min/max` count each part number's last 2xx
UploadPart (a part sent again counts once; UploadPartCopy parts count in
`parts` only: they send no body); `max_parts_in_flight` is the most part
requests (any answer) whose start..end overlapped; `duration_ms` runs from
the first request's start to the last response's end.  An upload first seen
at a part (the tracer started after its Create) is joined from there.

Bounds: at most MAX_OPEN uploads and MAX_KEPT_PARTS parts kept in all (S3
allows 10,000 parts an upload: MAX_PARTS kept of each); over either, the
least recently active upload is forgotten, its line lost (counted:
`multipart_evicted`).  The keys of MAX_ENDED recently ended uploads are
remembered so a part record that finishes late (incomplete, at its
connection's close) does not open a new upload.
"""
from __future__ import annotations

import collections
import re
from array import array
from dataclasses import dataclass, field
from typing import Mapping, Optional
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import unescape

from s3slower.aggregator.containers import Container
from s3slower.aggregator.records import Record, rfc3339
from s3slower.common.config import Config

KIND = "multipart_upload"
RESULTS = ("completed", "aborted", "abandoned", "failed")
DEFAULT_IDLE_S = Config().multipart_idle_s
MAX_OPEN = 10_000               # uploads in progress at once, all processes
MAX_PARTS = 10_000              # S3's most parts in one upload
MAX_KEPT_PARTS = 500_000        # part requests kept in all (~40 B each)
MAX_ENDED = 10_000              # ended uploads remembered for late records

CREATE, COMPLETE, ABORT = ("CreateMultipartUpload", "CompleteMultipartUpload",
                           "AbortMultipartUpload")
PARTS = frozenset({"UploadPart", "UploadPartCopy"})
_BY_QUERY = PARTS | {COMPLETE, ABORT}
_UPLOAD_ID = re.compile(rb"<UploadId>([^<]{1,1024})</UploadId>")


def upload_id(operation: str, target: str, body_prefix: bytes) -> tuple[str, int]:
    """(upload id, part number) a request names: for a Create the id its
    answer's body gives, for the others their query's; ("", 0) for none."""
    if operation == CREATE:
        m = _UPLOAD_ID.search(body_prefix)
        return (unescape(m.group(1).decode("utf-8", "replace")) if m else ""), 0
    if operation not in _BY_QUERY:
        return "", 0
    query = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
    part = query.get("partNumber", "")
    return query.get("uploadId", ""), int(part) if part.isdigit() and len(part) < 7 else 0


@dataclass(frozen=True)
class MultipartUpload:
    """One multipart upload, ended (docs/multipart.md)."""
    start_wall_ns: int          # its first request's start
    end_wall_ns: int            # its last response's end
    hostname: str
    pid: int
    comm: str
    endpoint: str
    bucket: str
    key: str
    upload_id: str
    parts: int
    bytes: int
    part_size_min: int
    part_size_max: int
    max_parts_in_flight: int
    result: str                 # one of RESULTS
    labels: Mapping[str, str] = field(default_factory=dict)
    container: Optional[Container] = None

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_wall_ns - self.start_wall_ns) / 1e6

    def to_json_dict(self) -> dict:
        d = {
            "kind": KIND,
            "timestamp": rfc3339(self.start_wall_ns),
            "hostname": self.hostname,
            "upload_id": self.upload_id,        # the order
            "bucket": self.bucket,
            "key": self.key,
            "endpoint": self.endpoint,
            "pid": self.pid,
            "comm": self.comm,
            "parts": self.parts,
            "bytes": self.bytes,
            "part_size_min": self.part_size_min,
            "part_size_max": self.part_size_max,
            "max_parts_in_flight": self.max_parts_in_flight,
            "duration_ms": round(self.duration_ms, 3),
            "result": self.result,
            "labels": dict(self.labels),
        }
        if self.container is not None:
            d.update(self.container.json_keys())
        return d


class _Open:
    """An upload in progress."""
    __slots__ = ("first", "last", "rec", "sizes", "spans", "complete_failed")

    def __init__(self, rec: Record):
        self.first = rec.start_wall_ns
        self.last = rec.start_wall_ns + rec.latency_ns
        self.rec = rec                  # the one it takes comm, labels, container from
        self.sizes: dict[int, int] = {}     # part number -> body bytes (-1: a copy)
        self.spans = array("q")         # start, end of each part request
        self.complete_failed = False

    def add(self, rec: Record) -> None:
        self.first = min(self.first, rec.start_wall_ns)
        self.last = max(self.last, rec.start_wall_ns + rec.latency_ns)
        if rec.operation == CREATE:
            self.rec = rec

    @property
    def kept(self) -> int:
        return len(self.sizes) + len(self.spans) // 2


class MultipartTracker:
    def __init__(self, idle_ns: int = int(DEFAULT_IDLE_S * 1e9), max_open: int = MAX_OPEN,
                 max_kept_parts: int = MAX_KEPT_PARTS):
        self.idle_ns = idle_ns
        self.max_open = max_open
        self.max_kept_parts = max_kept_parts
        self._open: collections.OrderedDict[tuple, _Open] = collections.OrderedDict()
        self._ended: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        self._kept = 0
        self.evicted = 0

    def feed(self, rec: Record) -> list[MultipartUpload]:
        """A finished request record: the uploads it ended, if any."""
        op = rec.operation
        if not rec.upload_id or (op == CREATE and not 200 <= rec.status_code < 300):
            return []
        key = (rec.hostname, rec.pid, rec.endpoint, rec.bucket, rec.key, rec.upload_id)
        if key in self._ended:
            return []
        up = self._open.get(key)
        if up is None:
            if rec.status_code == 404:      # NoSuchUpload: nothing to follow
                return []
            up = self._open[key] = _Open(rec)
        else:
            self._open.move_to_end(key)
            self._kept -= up.kept
            up.add(rec)
        if op in PARTS:
            _add_part(up, rec)
        self._kept += up.kept
        result = _result(up, rec)
        if result:
            return [self._end(key, result)]
        self._bound()
        return []

    def expire(self, now_wall_ns: int) -> list[MultipartUpload]:
        """The uploads with no request for idle_ns: abandoned (or failed)."""
        idle = [k for k, up in self._open.items() if now_wall_ns - up.last > self.idle_ns]
        return [self._end(k, "failed" if self._open[k].complete_failed else "abandoned")
                for k in idle]

    def _end(self, key: tuple, result: str) -> MultipartUpload:
        up = self._open.pop(key)
        self._kept -= up.kept
        self._ended[key] = None
        if len(self._ended) > MAX_ENDED:
            self._ended.popitem(last=False)
        return _line(key, up, result)

    def _bound(self) -> None:
        while len(self._open) > self.max_open or \
                (self._kept > self.max_kept_parts and len(self._open) > 1):
            _, up = self._open.popitem(last=False)
            self._kept -= up.kept
            self.evicted += 1

    def __len__(self) -> int:
        return len(self._open)


def _add_part(up: _Open, rec: Record) -> None:
    if len(up.spans) < 2 * MAX_PARTS:
        up.spans.append(rec.start_wall_ns)
        up.spans.append(rec.start_wall_ns + rec.latency_ns)
    if 200 <= rec.status_code < 300 and rec.part_number and \
            (rec.part_number in up.sizes or len(up.sizes) < MAX_PARTS):
        up.sizes[rec.part_number] = rec.request_size if rec.operation == "UploadPart" else -1


def _result(up: _Open, rec: Record) -> str:
    """What rec says of how the upload ended ("" while it goes on)."""
    ok = 200 <= rec.status_code < 300 and rec.complete
    if rec.operation == COMPLETE:
        if ok and not rec.error_code:
            return "completed"
        if rec.status_code == 404:
            return "failed"
        up.complete_failed = True
    elif rec.operation == ABORT and (ok or rec.status_code == 404):
        return "failed" if up.complete_failed else "aborted"
    return ""


def _line(key: tuple, up: _Open, result: str) -> MultipartUpload:
    hostname, pid, endpoint, bucket, obj, uid = key
    sizes = [n for n in up.sizes.values() if n >= 0]
    r = up.rec
    return MultipartUpload(up.first, up.last, hostname, pid, r.comm, endpoint, bucket, obj, uid,
                           len(up.sizes), sum(sizes), min(sizes, default=0),
                           max(sizes, default=0), most_in_flight(up.spans), result,
                           r.labels, r.container)


def most_in_flight(spans) -> int:
    """The most (start, end) spans (flattened) open at one moment; a span
    ending when another starts does not overlap it."""
    edges = sorted([(spans[i], 1) for i in range(0, len(spans), 2)] +
                   [(spans[i], -1) for i in range(1, len(spans), 2)])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most
