"""Retries and throttling end to end, as root: real BPF, real boto3 with
retries on (standard mode), and a real threaded server in this process
(bench/s3server.py with `Faults`) that answers 503 SlowDown, 500
InternalError, or closes the connection once it has read the request, to the
requests the keys name.

The records' `retry` and `s3slower_retries_total` must be what botocore says
it did (ResponseMetadata RetryAttempts per call, and the attempts its
before-send hook saw); the failures counted by reason must be the faults the
server served.  A client that sends no amz-sdk-request header gets its
retry from the heuristic (the same request again after a failure).
"""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import s3server
from conftest import Tracer, free_port, need_root_bpf, run_client, wait_until
from tls_fixtures import marker_arrives

pytestmark = pytest.mark.e2e
CLIENT = Path(__file__).parent / "clients" / "boto3_retries.py"
# Sends the same GET twice on one connection, no SDK headers: the first is
# answered 503 (its key starts slowdown1), the second 200.
PLAIN_CLIENT = r"""
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for _ in range(2):
    c.request("GET", "/" + sys.argv[2] + "/slowdown1-plain-10")
    c.getresponse().read()
"""


@pytest.fixture(scope="module")
def tracer(tmp_path_factory):
    need_root_bpf()
    port = free_port()
    t = Tracer(tmp_path_factory.mktemp("retries"),
               ["--prometheus", "-p", str(port), "--host", "127.0.0.1"])
    t.port = port
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture
def server():
    faults = s3server.Faults()
    port, stop = s3server.start(faults)
    try:
        yield port, faults
    finally:
        stop()


def metric(tracer, name: str, **labels) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{tracer.port}/metrics", timeout=10).read()
    return sum(s.value for fam in text_string_to_metric_families(text.decode())
               for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_boto3_retries_as_botocore_counts_them(tracer, server):
    port, faults = server
    bucket = "retry-" + uuid.uuid4().hex[:8]
    out = json.loads(run_client([sys.executable, str(CLIENT), f"http://127.0.0.1:{port}",
                                 bucket]).stdout)
    calls = out["calls"]
    attempts = sum(len(c["attempts"]) for c in calls)
    recs = wait_until(lambda: (r := tracer.records_for({out["pid"]})) and len(r) >= attempts
                      and r, 30, f"{attempts} records")
    marker_arrives(tracer)
    recs = tracer.records_for({out["pid"]})
    assert len(recs) == attempts, recs
    assert {r["bucket"] for r in recs} == {bucket}
    for c in calls:
        mine = sorted((r for r in recs if r["key"] == c["key"]), key=lambda r: r["timestamp"])
        # botocore's count, its hook's count and the tracer's agree
        assert len(c["attempts"]) == c["retries"] + 1, c
        assert [r["retry"] for r in mine] == list(range(c["retries"] + 1)), (c, mine)
    assert calls[-1]["status"] == 503 and calls[-1]["retries"] == 2     # failed in the end
    total = sum(c["retries"] for c in calls)
    assert total == 7
    assert metric(tracer, "s3slower_retries_total", bucket=bucket) == total
    assert metric(tracer, "s3slower_retries_total", bucket=bucket,
                  s3_operation="GetObject") == 2 + 1 + 2

    # the failures are the faults served, by reason
    assert dict(faults.served) == {"slowdown": 6, "internal": 1, "reset": 1}
    reasons = {"slow_down": faults.served["slowdown"],
               "internal_error": faults.served["internal"],
               "connection_reset": faults.served["reset"]}
    for reason, n in reasons.items():
        assert metric(tracer, "s3slower_request_failures_total", bucket=bucket,
                      reason=reason) == n, reason
    assert metric(tracer, "s3slower_request_failures_total", bucket=bucket) == sum(
        reasons.values())
    assert metric(tracer, "s3slower_request_failures_total", bucket=bucket,
                  s3_operation="HeadObject", reason="slow_down") == 1  # a 503 without a body
    assert sum(r["error_code"] == "SlowDown" for r in recs) == 5       # those with one
    (reset,) = [r for r in recs if r["key"] == "reset1-get-100" and not r["complete"]]
    assert (reset["status_code"], reset["retry"], reset["is_error"]) == (0, 0, True)


def test_a_client_without_sdk_headers_by_the_heuristic(tracer, server):
    port, faults = server
    bucket = "plain-" + uuid.uuid4().hex[:8]
    p = subprocess.run([sys.executable, "-c", PLAIN_CLIENT, str(port), bucket],
                       capture_output=True, text=True, timeout=60, check=True)
    assert dict(faults.served) == {"slowdown": 1}
    marker_arrives(tracer)
    recs = sorted((r for r in tracer.records() if r["bucket"] == bucket),
                  key=lambda r: r["timestamp"])
    assert [(r["status_code"], r["error_code"], r["retry"]) for r in recs] == \
        [(503, "SlowDown", 0), (200, "", 1)]
    assert metric(tracer, "s3slower_retries_total", bucket=bucket) == 1
    assert metric(tracer, "s3slower_request_failures_total", bucket=bucket,
                  reason="slow_down") == 1
