"""The multipart join (aggregator/multipart.py): records in, upload lines out,
on a fake clock; and its metrics (aggregator/multipart_out.py)."""
from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from golden.harness import all_cases, run
from s3slower.aggregator import multipart
from s3slower.aggregator.multipart import MultipartTracker, MultipartUpload, most_in_flight
from s3slower.aggregator.multipart_out import MultipartMetrics
from s3slower.aggregator.records import Record, to_json

MS = 1_000_000
MIB = 1 << 20
T0 = 1_700_000_000 * 10**9


def rec(op: str, upload: str = "u1", *, at: int = 0, ms: int = 10, status: int = 200,
        part: int = 0, size: int = 0, key: str = "k", pid: int = 7, error: str = "",
        complete: bool = True) -> Record:
    method = {"UploadPart": "PUT", "AbortMultipartUpload": "DELETE"}.get(op, "POST")
    return Record(T0 + at * MS, "host", pid, pid, "client", method, op, "b", key, "s3:9000",
                  "/b/" + key, status, error, size, 0, ms * MS, ms * MS, "none", complete,
                  upload_id=upload, part_number=part)


def create(upload: str = "u1", **kw) -> Record:
    return rec("CreateMultipartUpload", upload, **kw)


def part(n: int, upload: str = "u1", size: int = 5 * MIB, **kw) -> Record:
    return rec("UploadPart", upload, part=n, size=size, **kw)


def complete(upload: str = "u1", **kw) -> Record:
    return rec("CompleteMultipartUpload", upload, **kw)


def abort(upload: str = "u1", **kw) -> Record:
    return rec("AbortMultipartUpload", upload, **kw)


def feed(t: MultipartTracker, *recs: Record) -> list[MultipartUpload]:
    return [line for r in recs for line in t.feed(r)]


def test_create_parts_complete_make_one_line():
    t = MultipartTracker()
    lines = feed(t, create(at=0, ms=5), part(1, at=10, ms=40), part(2, at=12, ms=30),
                 part(3, at=20, ms=50, size=MIB), complete(at=80, ms=7))
    assert len(lines) == 1 and len(t) == 0
    d = json.loads(to_json(lines[0]))
    assert d == {"kind": "multipart_upload", "timestamp": "2023-11-14T22:13:20.000000Z",
                 "hostname": "host", "pid": 7, "comm": "client", "endpoint": "s3:9000",
                 "bucket": "b", "key": "k", "upload_id": "u1", "parts": 3,
                 "bytes": 11 * MIB, "part_size_min": MIB, "part_size_max": 5 * MIB,
                 "max_parts_in_flight": 3, "duration_ms": 87.0, "result": "completed",
                 "labels": {}}


def test_records_in_any_order_give_the_same_line():
    recs = [create(at=0), part(1, at=10, ms=40), part(2, at=60), complete(at=100)]
    first = feed(MultipartTracker(), *recs)
    # a part's record finished late (its response was cut short): after the Complete
    late = feed(MultipartTracker(), recs[2], recs[1], recs[0], recs[3])
    assert first == late and first[0].parts == 2 and first[0].max_parts_in_flight == 1
    t = MultipartTracker()
    assert feed(t, recs[0], recs[1], recs[3]) and feed(t, recs[2]) == []   # ended: ignored
    assert len(t) == 0


def test_two_uploads_of_the_same_key_stay_apart():
    t = MultipartTracker()
    lines = feed(t, create("a"), create("b", at=1), part(1, "a", at=5), part(1, "b", at=5),
                 part(2, "b", at=30), abort("a", at=40), complete("b", at=50))
    assert [(x.upload_id, x.result, x.parts) for x in lines] == \
        [("a", "aborted", 1), ("b", "completed", 2)]
    other_pid = feed(MultipartTracker(), create(pid=8), part(1, pid=9), complete(pid=8))
    assert [(x.pid, x.parts) for x in other_pid] == [(8, 0)]


def test_a_part_sent_again_counts_once_and_copies_count_no_bytes():
    t = MultipartTracker()
    lines = feed(t, create(), part(1, status=500, size=7), part(1, at=20, size=3 * MIB),
                 rec("UploadPartCopy", part=2, at=40), complete(at=60))
    up = lines[0]
    assert (up.parts, up.bytes, up.part_size_min, up.part_size_max) == (2, 3 * MIB, 3 * MIB,
                                                                        3 * MIB)


def test_idle_uploads_are_abandoned_and_failed_completes_fail():
    t = MultipartTracker(idle_ns=300 * 10**9)
    feed(t, create("idle"), part(1, "idle", at=10),
         create("bad"), complete("bad", at=20, status=400, error="InvalidPart"))
    assert t.expire(T0 + 299 * 10**9) == []
    assert sorted((x.upload_id, x.result) for x in t.expire(T0 + 301 * 10**9)) == \
        [("bad", "failed"), ("idle", "abandoned")]
    # a 2xx answer whose body is an <Error>, then the abort the SDK sends: failed
    assert [x.result for x in feed(t, create("c"), complete("c", error="InternalError"),
                                   abort("c"))] == ["failed"]
    assert [x.result for x in feed(t, create("d"), complete("d", status=404))] == ["failed"]
    # a Complete that failed, retried and answered: completed
    assert [x.result for x in feed(t, create("e"), complete("e", status=503),
                                   complete("e", at=5))] == ["completed"]
    # an Abort whose answer was lost does not end it; a part of no known upload is not one
    assert feed(t, create("f"), abort("f", complete=False), part(1, "g", status=404)) == []
    assert len(t) == 1


def test_open_uploads_are_bounded_and_evictions_counted():
    t = MultipartTracker(max_open=2)
    feed(t, create("a"), create("b"), part(1, "a"), create("c"))
    assert (len(t), t.evicted) == (2, 1)
    assert [x.upload_id for x in feed(t, complete("a"), complete("c"))] == ["a", "c"]
    kept = MultipartTracker(max_kept_parts=4)
    feed(kept, *[part(n, "a") for n in (1, 2)], part(1, "b"))
    assert (len(kept), kept.evicted) == (1, 1)      # a held 4 entries, b's came on top


def test_most_in_flight():
    assert most_in_flight([]) == 0
    assert most_in_flight([0, 10, 10, 20]) == 1       # end == start: no overlap
    assert most_in_flight([0, 10, 5, 20, 6, 7, 8, 30]) == 3


def test_upload_id_from_the_answer_or_the_query():
    body = (b'<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult>'
            b'<Bucket>b</Bucket><Key>k</Key><UploadId>a&amp;b</UploadId>'
            b'</InitiateMultipartUploadResult>')
    assert multipart.upload_id("CreateMultipartUpload", "/b/k?uploads", body) == ("a&b", 0)
    assert multipart.upload_id("CreateMultipartUpload", "/b/k?uploads", b"") == ("", 0)
    assert multipart.upload_id("UploadPart", "/b/k?partNumber=12&uploadId=x%2By", b"") == \
        ("x+y", 12)
    assert multipart.upload_id("CompleteMultipartUpload", "/b/k?uploadId=z", b"") == ("z", 0)
    assert multipart.upload_id("GetObject", "/b/k?uploadId=z", b"") == ("", 0)


def test_the_golden_multipart_case_gives_its_line():
    case = next(c for c in all_cases() if c.source.name == "multipart_upload.json")
    got = run(case)
    assert [(x["kind"], x["upload_id"], x["parts"], x["bytes"], x["result"])
            for x in got.lines] == [("multipart_upload", "upl-1", 1, 5 * MIB, "completed")]


def test_metrics_by_result_and_duration_of_the_completed():
    reg = CollectorRegistry()
    m = MultipartMetrics(reg, extra_label_keys=("team",), max_sets=2)
    t = MultipartTracker()
    for line in feed(t, create("a"), complete("a", at=100), create("b"), abort("b")):
        m.emit_multipart(line)
    labels = {"hostname": "host", "comm": "client", "bucket": "b", "endpoint": "s3:9000",
              "team": ""}
    v = reg.get_sample_value
    assert v("s3slower_multipart_uploads_total", dict(labels, result="completed")) == 1
    assert v("s3slower_multipart_uploads_total", dict(labels, result="aborted")) == 1
    assert v("s3slower_multipart_upload_duration_ms_count", labels) == 1
    assert v("s3slower_multipart_upload_duration_ms_sum", labels) == 110.0
    m.emit_multipart(feed(t, create("c", key="k2", pid=9), abort("c", pid=9, key="k2"))[0])
    other = dict.fromkeys(labels, "__other__")
    m.emit_multipart(MultipartUpload(0, 1, "h2", 1, "x", "e", "b2", "k", "u", 0, 0, 0, 0, 0,
                                     "abandoned"))
    assert v("s3slower_multipart_uploads_total", dict(other, result="abandoned")) == 1
