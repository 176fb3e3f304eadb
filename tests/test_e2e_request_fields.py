"""End to end, as root (issue 15, items 2, 3, 5): real BPF, real boto3.

Against moto (which names its requests in `x-amzn-requestid`, as botocore
reads first) and `rclone serve s3` (gofakes3: `x-amz-request-id` and
`x-amz-id-2`, as AWS S3 sends them): every record's
`request_id` and `extended_request_id` are what boto3 reported in that
call's ResponseMetadata (RequestId, HostId), its `client` is boto3 at the
version boto3 says, `size_class` is its object's, and /metrics (with
--client-label) carries the latency-by-size and transfer-rate histograms
and the client label.
"""
from __future__ import annotations

import json

import pytest

from conftest import Tracer, free_port, need_root_bpf, run_client, wait_until
from test_e2e_documented import scrape, stop, total
from test_e2e_go_server import rclone_serve  # noqa: F401  (a fixture)
from tls_fixtures import bucket_name, marker_arrives, python_client

pytestmark = pytest.mark.e2e
BODY = 3 * 1024 * 1024          # 1-16MiB, and a body that takes more than one read


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    need_root_bpf()
    port = free_port()
    t = Tracer(tmp_path_factory.mktemp("fields"), ["--prometheus", "-p", str(port), "--host",
                                                  "127.0.0.1", "--client-label"])
    t.port = port
    try:
        yield t
    finally:
        stop(t)


def _run_and_check(traced, server) -> dict:
    args = python_client("boto3_ops.py") + [server.url, bucket_name("fields")]
    if server.ca:
        args.append(str(server.ca))
    out = json.loads(run_client(args, {"S3S_BODY_SIZE": str(BODY)}).stdout)
    calls = out["calls"]
    traced.wait_records({out["pid"]}, len(calls), timeout=30)
    marker_arrives(traced)
    recs = sorted(traced.records_for({out["pid"]}), key=lambda r: r["timestamp"])
    assert [r["operation"] for r in recs] == [c["op"] for c in calls]
    for r, c in zip(recs, calls):
        where = f"{c}: {r}"
        assert (r["request_id"], r["extended_request_id"]) == (c["request_id"], c["host_id"]), \
            where
        assert r["request_id"], where        # both servers name every response
        assert (r["client"], r["client_version"]) == ("boto3", out["boto3"]), where
        moved = r["request_size"] + r["response_size"]
        assert r["size_class"] == ("1-16MiB" if moved >= BODY else "<1MiB"), where
        assert r["region"] == "", where       # 127.0.0.1 names none, neither answer says
    return out


def _check_metrics(traced, server_ops: int) -> None:
    wait_until(lambda: total(scrape(traced.port), "s3slower_requests_total", client="boto3")
               >= server_ops, 20, "the boto3 requests under client=boto3 in /metrics")
    m = scrape(traced.port)
    assert total(m, "s3slower_request_duration_by_size_ms_count", s3_operation="PutObject",
                 size_class="1-16MiB", client="boto3") >= 1
    assert total(m, "s3slower_request_duration_by_size_ms_count", s3_operation="HeadObject",
                 size_class="<1MiB", client="boto3") >= 1
    for op in ("PutObject", "GetObject"):
        n = total(m, "s3slower_transfer_rate_bytes_per_second_count", s3_operation=op,
                  client="boto3")
        rate = total(m, "s3slower_transfer_rate_bytes_per_second_sum", s3_operation=op,
                     client="boto3") / n
        assert n >= 1 and 1e5 < rate < 1e11, (op, n, rate)     # bytes/s of loopback
    assert total(m, "s3slower_transfer_rate_bytes_per_second_count",
                 s3_operation="ListObjectsV2") == 0


def test_boto3_against_moto(traced, moto_http, moto_https):
    ops = 0
    for server in (moto_http, moto_https):
        out = _run_and_check(traced, server)
        assert all(c["host_id"] == "" for c in out["calls"])   # moto sends no x-amz-id-2
        ops += len(out["calls"])
    _check_metrics(traced, ops)


# HTTP only: over HTTPS botocore streams a PUT aws-chunked, which gofakes3
# refuses with 411 before the body is sent (boto3 raises; that refusal is
# tests/test_e2e_early_answer.py's).
@pytest.mark.parametrize("rclone_serve", ["http"], indirect=True)
def test_boto3_against_rclone_serve_s3(traced, rclone_serve):  # noqa: F811
    out = _run_and_check(traced, rclone_serve)
    assert all(c["host_id"] and c["request_id"] for c in out["calls"])
    _check_metrics(traced, len(out["calls"]))
