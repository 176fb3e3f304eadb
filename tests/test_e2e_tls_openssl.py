"""OpenSSL end to end, as root, against moto over HTTPS: dynamically linked
(`SSL_write_ex`/`SSL_read_ex` through Python's _ssl, plain `SSL_write`/
`SSL_read` through curl) and compiled into the executable (node, whose
OpenSSL exports its symbols from the node executable and feeds TLS from memory
buffers, so its socket is learnt from the ciphertext read just before).
"""
from __future__ import annotations

import os
import subprocess

import pytest

from tls_fixtures import (BODY_SIZE, CLIENTS, bucket_name, check_sequence, need_tool,
                          node_env, python_client, run_json, sequence, timed_process,
                          with_timings)

pytestmark = pytest.mark.e2e


def imports(binary: str, symbol: str) -> bool:
    out = subprocess.run(["nm", "-D", binary], capture_output=True, text=True).stdout
    return any(line.split()[-1].split("@")[0] == symbol for line in out.splitlines()
               if line.strip())


def test_openssl_dynamic_ex_functions_boto3(tracer, moto_https):
    import _ssl
    assert imports(_ssl.__file__, "SSL_write_ex") and imports(_ssl.__file__, "SSL_read_ex")
    bucket = bucket_name("ossl-ex")
    out = run_json(python_client("boto3_ops.py") + [moto_https.url, bucket, str(moto_https.ca)])
    calls = with_timings(sequence(out["body_size"]), out["calls"])
    check_sequence(tracer, out["pid"], bucket, calls, "openssl")


def test_openssl_dynamic_plain_functions_curl(tracer, moto_https, tmp_path):
    libcurl = subprocess.run(["sh", "-c", "ldd $(command -v curl) | awk '/libcurl/{print $3}'"],
                             capture_output=True, text=True).stdout.strip()
    assert imports(libcurl, "SSL_write") and imports(libcurl, "SSL_read")
    assert not imports(libcurl, "SSL_write_ex")
    bucket = bucket_name("ossl-plain")
    body = tmp_path / "body.bin"
    body.write_bytes(b"c" * BODY_SIZE)
    base = ["curl", "-sS", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "testing:testing",
            "--cacert", str(moto_https.ca), "-o", str(tmp_path / "out"), "-w", "%{http_code}"]
    u = f"{moto_https.url}/{bucket}"
    key = "dir/obj%201.bin"
    commands = [base + ["-X", "PUT", u], base + ["-T", str(body), f"{u}/{key}"],
                base + [f"{u}/{key}"], base + ["-I", f"{u}/{key}"],
                base + [f"{u}?list-type=2"], base + [f"{u}/missing"],
                base + ["-X", "DELETE", f"{u}/{key}"], base + ["-X", "DELETE", u]]
    calls = sequence()
    pids = []
    for call, cmd in zip(calls, commands):
        pid, ms, res = timed_process(cmd)
        assert res.returncode == 0 and int(res.stdout) == call.status, res.stderr
        pids.append(pid)
        call.ms = ms
    check_sequence(tracer, pids, bucket, calls, "openssl")


def test_openssl_inside_the_executable_node(tracer, moto_https):
    node = os.path.realpath(need_tool("node"))
    assert imports(node, "SSL_write") or pytest.fail(f"{node} has no OpenSSL symbols")
    bucket = bucket_name("ossl-node")
    out = run_json(["node", str(CLIENTS / "node_s3_ops.mjs"), moto_https.url, bucket,
                    str(BODY_SIZE)], env=node_env(moto_https))
    calls = with_timings(sequence(), out["calls"])
    check_sequence(tracer, out["pid"], bucket, calls, "openssl")
