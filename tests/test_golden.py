"""Golden captures (tests/golden/): every case run whole, byte by byte, at random
split points, from mid-stream, and truncated, through the whole pipeline.

What "identical" means, per variant:
  whole           the records equal the case's expected records, field for field
                  and in emission order, and the stream-gap count equals its own.
  byte by byte,   each call's captured bytes fed as several calls (1 byte each, or
  random splits   at seeded random points) carrying the call's own time stamps, the
                  uncaptured rest with the last piece: exactly the whole run's
                  records, in order, and the same stream-gap count.
  mid-stream      per connection, everything before a seeded random byte inside its
                  first exchange (from the first captured byte up to the call that
                  completed its first record) is unseen, connect included: the
                  records are the whole run's minus each cut connection's first
                  record, in order — the partial exchange leaves nothing behind.
                  (The first exchange begins with the call carrying its request's
                  first byte; at least one of its bytes is cut.)
  truncated       the capture stops at a seeded random byte: every record the whole
                  run had emitted before the call holding that byte is there,
                  identical and in order; after them come only records of requests
                  in progress, each either identical to its whole-run record or
                  that record cut short: same identity fields (IDENTITY), complete
                  false, status either the whole run's (with its ttfb) or 0 (ttfb
                  0), sizes and latency no larger than the whole run's.
"""
from __future__ import annotations

import io
import random

import pytest

from golden import harness
from golden.harness import IDENTITY, Case
from s3slower.aggregator.records import rfc3339
from s3slower.aggregator.replay import replay
from s3slower.common.events import Kind

CASES = harness.all_cases()
IDS = [c.name for c in CASES]
SEEDS = range(4)
REQUIRED = {"keepalive_several_requests", "put_100_continue", "chunked_response",
            "aws_chunked_upload", "head_large_object", "errors_404_503", "multipart_upload",
            "copy_object", "delete_objects", "list_v2_continuation", "virtual_hosted",
            "presigned_get", "large_get_beyond_capture", "never_finishes",
            "close_delimited_body"}


def test_the_required_cases_exist():
    assert REQUIRED <= set(IDS)
    assert {"boto3_http", "boto3_https", "awscli_cp_http", "curl_http"} <= set(IDS)


@pytest.fixture(scope="module")
def wholes():
    return {}


def whole(case: Case, cache: dict) -> harness.Run:
    if case.name not in cache:
        cache[case.name] = harness.run(case)
    return cache[case.name]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_whole(case, wholes):
    got = whole(case, wholes)
    assert got.records == case.expected
    assert got.stream_gap == case.expected_gaps


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_byte_by_byte(case, wholes):
    ref = whole(case, wholes)
    events = harness.byte_by_byte(case.events)
    if len(events) > 60_000:      # a real capture: byte by byte through the first 512
        events = [p for ev in case.events          # bytes of every call (all of its head)
                  for p in harness.split_event(ev, range(1, min(len(ev.data), 512)))]
    got = harness.run(case, events)
    assert got.records == ref.records
    assert got.stream_gap == ref.stream_gap


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_random_splits(case, seed, wholes):
    ref = whole(case, wholes)
    got = harness.run(case, harness.random_splits(case.events, random.Random(seed)))
    assert got.records == ref.records
    assert got.stream_gap == ref.stream_gap


def _mid_stream(case: Case, rng: random.Random) -> tuple[list, list]:
    """(events with every connection cut inside its first exchange, records to expect)"""
    ref = whole(case, {})
    by_conn: dict[int, list[int]] = {}
    for g, ev in enumerate(case.events):
        by_conn.setdefault(ev.conn_id, []).append(g)
    drop, cut, dropped = set(), {}, []
    for conn, idxs in by_conn.items():
        evs = [case.events[g] for g in idxs]
        solo = harness.run(case, evs)
        if not solo.records:
            continue
        last = min(solo.emitted_at[0], len(evs) - 1)
        begin = next(i for i, ev in enumerate(evs) if ev.kind == Kind.DATA
                     and rfc3339(ev.start_ns + case.wall_offset_ns) == solo.records[0]["timestamp"])
        data = [i for i in range(begin, last + 1) if evs[i].kind == Kind.DATA and evs[i].data]
        i = rng.choice(data)
        b = rng.randrange(len(evs[i].data))
        if i == data[0] and b == 0:
            b = 1 if len(evs[i].data) > 1 else 0
            if b == 0:
                i = data[1] if len(data) > 1 else i
        drop.update(idxs[:i])
        if b:
            cut[idxs[i]] = harness.drop_prefix(evs[i], b)
        dropped.append(solo.records[0])
    events = [cut.get(g, ev) for g, ev in enumerate(case.events) if g not in drop]
    expect = list(ref.records)
    for rec in dropped:
        expect.remove(rec)
    return events, expect


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_from_mid_stream(case, seed):
    rng = random.Random(seed)
    events, expect = _mid_stream(case, rng)
    got = harness.run(case, events)
    assert got.records == expect
    split = harness.run(case, harness.random_splits(events, rng))
    assert split.records == expect


def check_truncated(case: Case, ref: harness.Run, j: int, n: int) -> None:
    events = case.events[:j]
    if n > 0:
        events = events + [harness.cut_after(case.events[j], n)]
    got = harness.run(case, events).records
    done = [r for r, at in zip(ref.records, ref.emitted_at) if at < j]
    where = f"{case.name} cut at event {j} byte {n}"
    assert got[:len(done)] == done, where
    rest = [r for r, at in zip(ref.records, ref.emitted_at) if at >= j]
    for rec in got[len(done):]:
        if rec in rest:
            rest.remove(rec)
            continue
        same = [w for w in rest if all(w[k] == rec[k] for k in IDENTITY)]
        assert same, f"{where}: a record the whole run does not have: {rec}"
        w = same[0]
        rest.remove(w)
        assert rec["complete"] is False and rec["is_error"] is True, where
        if rec["status_code"]:
            assert (rec["status_code"], rec["ttfb_ms"]) == (w["status_code"], w["ttfb_ms"]), where
        else:
            assert rec["ttfb_ms"] == 0, where
        for k in ("request_size", "response_size", "latency_ms"):
            assert 0 <= rec[k] <= w[k], (where, k, rec, w)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_truncated(case, seed, wholes):
    ref = whole(case, wholes)
    rng = random.Random(seed)
    for _ in range(5):
        j = rng.randrange(len(case.events))
        ev = case.events[j]
        n = rng.randrange(len(ev.data)) if ev.kind == Kind.DATA and ev.data else 0
        check_truncated(case, ref, j, n)


@pytest.mark.parametrize("case", [c for c in CASES if c.source.suffix == ".rec"],
                         ids=[c.name for c in CASES if c.source.suffix == ".rec"])
def test_real_recording_through_replay(case):
    """The recording through `aggregator --replay`'s code path gives the same records."""
    from s3slower.aggregator.pipeline import Pipeline
    from s3slower.aggregator.service import Aggregator

    class Sink:
        def __init__(self):
            self.records = []

        def emit(self, rec):
            self.records.append(rec.to_json_dict())

        def tick(self, stats, now):
            pass

        def close(self):
            pass

    sink = Sink()
    with open(case.source, "rb") as f:
        replay(f, Aggregator(None, Pipeline(), [sink]))
    key = lambda r: (r["timestamp"], r["tid"])   # noqa: E731
    assert sorted(sink.records, key=key) == sorted(case.expected, key=key)
