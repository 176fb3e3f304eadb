"""One process, one thread, two TLS connections to two endpoints at once
(node's event loop over its built-in OpenSSL, fed from memory, so neither
TLS call has a nested syscall): no request is paired with the other
connection's response.

Each endpoint serves an object of its own size; every GET record must carry
its own endpoint's bucket, port and size, and come from node's one thread.
"""
from __future__ import annotations

from collections import Counter

import pytest

from conftest import _moto, free_port, wait_port
from tls_fixtures import CLIENTS, bucket_name, node_env, run_json

pytestmark = pytest.mark.e2e
ROUNDS = 20
SIZES = {"A": 1000, "B": 3000}


@pytest.fixture(scope="module")
def second_https(tls_cert):
    cert, key = tls_cert
    port = free_port()
    proc = _moto(port, ["-c", str(cert), "-k", str(key)])
    try:
        wait_port(port)
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_one_thread_two_endpoints_never_crossed(tracer, moto_https, second_https):
    urls = {"A": moto_https.url, "B": second_https}
    buckets = {"A": bucket_name("left"), "B": bucket_name("right")}
    out = run_json(["node", str(CLIENTS / "node_two_endpoints.mjs"), urls["A"], buckets["A"],
                    urls["B"], buckets["B"], str(ROUNDS)], env=node_env(moto_https))
    assert len(out["gets"]) == 2 * ROUNDS
    want = 2 + 2 + 2 * ROUNDS          # 2 CreateBucket, 2 PutObject, the GETs
    tracer.wait_records({out["pid"]}, want, timeout=30)
    recs = tracer.records_for({out["pid"]})
    assert len(recs) == want
    assert len({r["tid"] for r in recs}) == 1, "expected node's one event-loop thread"
    side_of = {b: s for s, b in buckets.items()}
    gets = [r for r in recs if r["operation"] == "GetObject"]
    assert Counter(side_of[r["bucket"]] for r in gets) == {"A": ROUNDS, "B": ROUNDS}
    for r in gets:
        side = side_of[r["bucket"]]
        assert r["endpoint"].endswith(":" + urls[side].rsplit(":", 1)[1]), r
        assert (r["status_code"], r["response_size"], r["complete"], r["tls"]) == \
            (200, SIZES[side], True, "openssl"), r
    puts = {side_of[r["bucket"]]: r["request_size"] for r in recs if r["operation"] == "PutObject"}
    assert puts == SIZES
