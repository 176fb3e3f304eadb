"""GnuTLS and NSS end to end, as root, against moto over HTTPS.

GnuTLS: wget (Debian builds it on GnuTLS), one process per request, with
presigned URLs.  NSS: tstclnt (NSS's test client, libnss3 + libnspr4), one
process per SigV4-signed request; only PR_* calls on NSS's SSL layer carry
plaintext (a bare NSPR socket or file is left to the syscall tracepoints).
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tls_fixtures import (BODY_SIZE, KEY, bucket_name, check_sequence, need_tool,
                          presigner, python_client, run_json, sequence, timed_process,
                          with_timings)

pytestmark = pytest.mark.e2e


def uses_library(binary: str, soname: str) -> bool:
    import subprocess
    return soname in subprocess.run(["ldd", binary], capture_output=True, text=True).stdout


def test_gnutls_wget(tracer, moto_https, tmp_path):
    wget = need_tool("wget")
    assert uses_library(wget, "libgnutls.so")
    s3 = presigner(moto_https)
    bucket = bucket_name("gnutls")
    body = tmp_path / "body.bin"
    body.write_bytes(b"g" * BODY_SIZE)

    def url(method, **params):
        return s3.generate_presigned_url(method, Params=params,
                                         HttpMethod=_HTTP[method])
    base = [wget, "-q", "-S", "--content-on-error", "-O", str(tmp_path / "out"),
            f"--ca-certificate={moto_https.ca}"]
    commands = [
        base + ["--method=PUT", "--body-data=", url("create_bucket", Bucket=bucket)],
        # an explicit type: a form-encoded body is eaten by moto's web framework
        base + ["--method=PUT", f"--body-file={body}",
                "--header=Content-Type: application/octet-stream",
                url("put_object", Bucket=bucket, Key=KEY)],
        base + [url("get_object", Bucket=bucket, Key=KEY)],
        base + ["--method=HEAD", url("head_object", Bucket=bucket, Key=KEY)],
        base + [url("list_objects_v2", Bucket=bucket)],
        base + [url("get_object", Bucket=bucket, Key="missing")],
        base + ["--method=DELETE", url("delete_object", Bucket=bucket, Key=KEY)],
        base + ["--method=DELETE", url("delete_bucket", Bucket=bucket)],
    ]
    calls, pids = sequence(), []
    for call, cmd in zip(calls, commands):
        pid, ms, res = timed_process(cmd)
        statuses = re.findall(rb"HTTP/1\.1 (\d{3})", res.stderr)
        assert statuses and int(statuses[-1]) == call.status, res.stderr[-2000:]
        pids.append(pid)
        call.ms = ms
    recs = check_sequence(tracer, pids, bucket, calls, "gnutls")
    # presigned query strings never reach an output (SPEC §8)
    assert all("X-Amz-Signature=REDACTED" in r["path"] and "testing" not in r["path"]
               for r in recs)


_HTTP = {"create_bucket": "PUT", "put_object": "PUT", "get_object": "GET",
         "head_object": "HEAD", "list_objects_v2": "GET", "delete_object": "DELETE",
         "delete_bucket": "DELETE"}


def test_nss_tstclnt(tracer, moto_https):
    tstclnt = need_tool("tstclnt")
    assert uses_library(tstclnt, "libnspr4.so") and uses_library(tstclnt, "libssl3.so")
    u = urlsplit(moto_https.url)
    bucket = bucket_name("nss")
    out = run_json(python_client("nss_ops.py") + [u.hostname, str(u.port), bucket,
                                                   str(BODY_SIZE)])
    calls = with_timings(sequence(), out["calls"])
    check_sequence(tracer, [c["pid"] for c in out["calls"]], bucket, calls, "nss")
