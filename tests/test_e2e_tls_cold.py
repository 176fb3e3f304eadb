"""Cold libraries end to end, as root: pyarrow's S3FileSystem (aws-sdk-cpp
over the OpenSSL compiled into pyarrow's own libraries) against moto over
HTTPS, run by a fresh tracer whose library cache starts empty (its
/var/cache/s3slower is a tmpfs of its own mount namespace: the host's cache
file is neither read nor written).  The job's first request is made 0.3 s
after `import pyarrow.fs` started, moments after the libraries were mapped:
every request moto served (its own account, tests/moto_access_log.py) must
come out, with its operation, status and sizes.  Before the fast symbol
reading (collector/elfsyms.py) the 48 MB libarrow.so alone took 2.6 s to
inspect and all of the job was lost.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote

import pytest

from conftest import Tracer, free_port, need_root_bpf, wait_port, wait_until
from tls_fixtures import bucket_name, client_env, marker_arrives, python_client, run_json

pytestmark = pytest.mark.e2e

# The job's first request, after the import started: the job made it
# 1.2 s after.  A quick import (~0.05 s) maps the last library ~0.25 s before
# it, against a budget of 0.2 s from mapping to attached (bench coldattach);
# a slow import slows the job's mappings as much as the tracer.
FIRST_REQUEST_S = 0.3
CACHE_DIR = "/var/cache/s3slower"
# The tracer in a mount namespace of its own, its cache directory empty.  The
# merged kernel-header tree lives there too (collector/hostprep.py): a
# BCC_KERNEL_SOURCE inherited from this process (set by any earlier test that
# prepared the host) would name a directory the tmpfs hides, so the tracer
# merges its own.
EMPTY_CACHE = ("unshare", "--mount", "sh", "-c",
               'mkdir -p "$0" && mount -t tmpfs -o mode=0750 s3slower-test-cache "$0" '
               '&& exec env -u BCC_KERNEL_SOURCE "$@"', CACHE_DIR)


@pytest.fixture
def cold_tracer(tmp_path):
    need_root_bpf()
    t = Tracer(tmp_path, [], prefix=EMPTY_CACHE)
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture
def logged_moto(tls_cert, tmp_path):
    """moto over HTTPS with its own account of each request (tests/moto_access_log.py)."""
    cert, key = tls_cert
    port = free_port()
    log = tmp_path / "access.jsonl"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "moto_access_log.py"),
                             "127.0.0.1", str(port), str(cert), str(key), str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=client_env())
    try:
        wait_port(port)
        yield f"127.0.0.1:{port}", cert, log
    finally:
        proc.terminate()
        proc.wait(10)


def cache_of(tracer: Tracer) -> dict:
    """The tracer's own cache file (in its mount namespace), by file identity."""
    from s3slower.collector import filecache
    return filecache.load(Path(f"/proc/{tracer.proc.pid}/root{CACHE_DIR}/libraries.json"),
                          filecache.inspector_digest())


def ident(path: Path) -> tuple[int, int, int, int]:
    st = path.resolve().stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def operation(method: str, key: str, query: str) -> str:
    """The S3 operation of a request as the server saw it (the few a
    filesystem client makes; anything else fails the test by name)."""
    q = parse_qs(query, keep_blank_values=True)
    ops = {("HEAD", False): "HeadBucket", ("PUT", False): "CreateBucket",
           ("DELETE", False): "DeleteBucket", ("HEAD", True): "HeadObject",
           ("GET", True): "GetObject", ("DELETE", True): "DeleteObject"}
    if method == "GET" and not key and q.get("list-type") == ["2"]:
        return "ListObjectsV2"
    if method == "POST" and not key and "delete" in q:
        return "DeleteObjects"
    if method == "POST" and key and ("uploads" in q or "uploadId" in q):
        return "CreateMultipartUpload" if "uploads" in q else "CompleteMultipartUpload"
    if method == "PUT" and key and set(q) <= {"partNumber", "uploadId", "x-id"}:
        return "UploadPart" if "partNumber" in q else "PutObject"
    if (method, bool(key)) in ops and not (set(q) - {"x-id"}):
        return ops[(method, bool(key))]
    raise AssertionError(f"a request this test does not know: {method} {key!r} ?{query}")


def test_pyarrow_cold_libraries(cold_tracer, logged_moto):
    endpoint, ca, log = logged_moto
    spec = importlib.util.find_spec("pyarrow")     # not imported here: its files stay cold
    assert spec is not None, "pyarrow is missing: tests/setup-test-tools.sh installs it"
    libs = Path(spec.origin).parent
    s3_lib = next(libs.glob("libarrow_s3.so.*"))
    pyarrow_files = {ident(p) for p in libs.glob("*.so*")}
    known = wait_until(lambda: cache_of(cold_tracer), 30, "the tracer's first cache save")
    assert not pyarrow_files & set(known), "pyarrow's files were known to the tracer already"

    bucket = bucket_name("cold")
    out = run_json(python_client("pyarrow_s3_job.py") + [endpoint, bucket, str(ca),
                                                         str(FIRST_REQUEST_S)])
    served = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(served) >= 13, served
    want = []
    for s in served:
        _, b, key = (unquote(s["path"]) + "/").split("/", 2)
        key = key[:-1] if key else ""
        want.append((operation(s["method"], key, s["query"]), b, key, s["status"],
                     s["request_size"], s["response_size"]))
    assert {w[1] for w in want} == {bucket}, want

    marker_arrives(cold_tracer)          # the job's records are all out by then
    recs = sorted(cold_tracer.records_for({out["pid"]}), key=lambda r: r["timestamp"])
    got = [(r["operation"], r["bucket"], r["key"], r["status_code"], r["request_size"],
            r["response_size"]) for r in recs]
    assert got == want, f"first request {out['first_request_ms']:.0f} ms after the " \
                        f"import started\nrecords {got}\n!= served {want}"
    for r in recs:
        assert r["complete"] and r["tls"] == "openssl", r
    learned = wait_until(lambda: cache_of(cold_tracer).get(ident(s3_lib)), 10,
                         f"{s3_lib.name} in the tracer's cache")
    assert learned[0] == "openssl", learned
