"""Containers (issue 14): which container a request came from.

A real boto3 client runs in its own mount and pid namespace (`unshare`),
chrooted into a Debian bookworm root with its own python3, libssl and boto3
(tests/debian_root.py builds it once with debootstrap), in a cgroup of its own
made by the test under the host's cgroup v2 hierarchy and named as a runtime
names its containers: a Docker scope, or an nspawn machine's payload.  It
talks to moto on loopback, over HTTP and over HTTPS through the root's own
libssl.  Its records must be captured whole (every request, right operation
and status) and carry the cgroup, the container id parsed from it and its pid
inside the namespace (1: it is the namespace's init); with --container-label
the request metrics carry container_id, without it they do not.

Tracing everything announces the client at its first connect; `--watch`
announces it as the tracker selects it: both ways are run.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import S3_ENV, Tracer, free_port, need_root_bpf, readable_dir, wait_until
from debian_root import cached_root
from test_e2e_documented import scrape, stop, total

pytestmark = pytest.mark.e2e

CLIENT = r"""
import sys
import boto3
from botocore.config import Config

url, bucket = sys.argv[1], sys.argv[2]
verify = sys.argv[3] if len(sys.argv) > 3 else None
s3 = boto3.client("s3", endpoint_url=url, verify=verify,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="in-a-container.txt", Body=b"x" * 1000)
assert s3.get_object(Bucket=bucket, Key="in-a-container.txt")["Body"].read() == b"x" * 1000
s3.list_objects_v2(Bucket=bucket)
try:
    s3.head_object(Bucket=bucket, Key="missing")
except s3.exceptions.ClientError:
    pass
print("done", flush=True)
sys.stdin.readline()        # stays until the test has seen its records
"""
OPERATIONS = [("CreateBucket", 200), ("PutObject", 200), ("GetObject", 200),
              ("ListObjectsV2", 200), ("HeadObject", 404)]
CLIENT_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def debian_root() -> Path:
    need_root_bpf()
    for tool in ("debootstrap", "systemd-nspawn", "unshare", "chroot"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (tests/setup-deploy-tools.sh installs it)")
    return cached_root("bookworm-client", ["python3-boto3"])


def cgroup2_mount() -> Path:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return Path(left.split()[4])
    pytest.fail("no cgroup v2 hierarchy is mounted")


class ContainedClient:
    """The client in its namespaces, chroot and cgroup `rel` (below the v2 root)."""

    def __init__(self, root: Path, rel: str, share: Path, url: str, bucket: str,
                 ca: Path | None):
        self.cgroup = cgroup2_mount() / rel.lstrip("/")
        self.cgroup.mkdir(parents=True)
        self.out = share / f"{bucket}.out"
        args = ["/mnt/client.py", url, bucket] + (["/mnt/ca.pem"] if ca else [])
        # in the new mount namespace only: the share at the root's /mnt
        inner = 'mount --bind "$1" "$0/mnt" && shift && exec chroot "$0" python3 "$@"'
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen(
                ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"',
                 str(self.cgroup), "-", "unshare", "--mount", "--pid", "--fork",
                 "--kill-child", "--", "sh", "-c", inner, str(root), str(share), *args],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, **S3_ENV))

    def wait_done(self) -> int:
        """Once its requests are done: the client's pid on the host (the python3
        in its cgroup, which stays until close())."""
        wait_until(lambda: self.out.read_text() or self.proc.poll() is not None,
                   CLIENT_TIMEOUT_S, "the contained client to finish its requests")
        assert self.out.read_text() == "done\n", self.out.read_text()[-3000:]
        pids = [int(p) for p in (self.cgroup / "cgroup.procs").read_text().split()]
        (pid,) = [p for p in pids if Path(f"/proc/{p}/comm").read_text().strip() == "python3"]
        return pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()            # unshare --kill-child takes the client along
                self.proc.wait(30)
        for d in (self.cgroup, *self.cgroup.parents):
            if d == cgroup2_mount():
                break
            d.rmdir()


def run_contained(root: Path, rel: str, tracer: Tracer, server, bucket: str) -> list[dict]:
    """The client's records, once all of its requests are there."""
    with readable_dir("s3slower-contained-") as share:
        (share / "client.py").write_text(CLIENT)
        if server.ca:
            shutil.copy(server.ca, share / "ca.pem")
        client = ContainedClient(root, rel, share, server.url, bucket, server.ca)
        try:
            return tracer.wait_records({client.wait_done()}, len(OPERATIONS), timeout=30)
        finally:
            client.close()


def assert_whole_and_identified(recs: list[dict], cgroup: str, cid: str, tls: str) -> None:
    assert [(r["operation"], r["status_code"]) for r in recs] == OPERATIONS, recs
    for r in recs:
        assert r["complete"] and r["comm"] == "python3" and r["tls"] == tls, r
        assert (r["cgroup"], r["container_id"], r["container_pid"]) == (cgroup, cid, 1), r


def test_a_docker_scoped_client_tracing_everything(debian_root, moto_http, moto_https,
                                                   tmp_path):
    cid = secrets.token_hex(32)
    scope = f"/s3slower-test-{os.getpid()}.slice/docker-{cid}.scope"
    port = free_port()
    tracer = Tracer(tmp_path, ["--prometheus", "-p", str(port), "--host", "127.0.0.1",
                               "--container-label"])
    try:
        for server, tls in ((moto_http, "none"), (moto_https, "openssl")):
            recs = run_contained(debian_root, scope, tracer, server, f"ctr-{tls}-{cid[:8]}")
            assert_whole_and_identified(recs, scope, cid, tls)
        wait_until(lambda: total(scrape(port), "s3slower_requests_total",
                                 container_id=cid) == 2 * len(OPERATIONS), 20,
                   "the client's requests under its container_id label in /metrics")
    finally:
        stop(tracer)


def test_an_nspawn_machine_client_under_watch(debian_root, moto_http, tmp_path):
    # a machine named s3s-client: systemd escapes the dash in its scope's name
    scope = f"/s3slower-test-{os.getpid()}.slice/machine.slice/" \
            "machine-s3s\\x2dclient.scope/payload"
    port = free_port()
    tracer = Tracer(tmp_path, ["--watch", "python3", "--prometheus", "-p", str(port),
                               "--host", "127.0.0.1"])
    try:
        recs = run_contained(debian_root, scope, tracer, moto_http, f"ctr-nspawn-{os.getpid()}")
        assert_whole_and_identified(recs, scope, "s3s-client", "none")
        wait_until(lambda: total(scrape(port), "s3slower_requests_total", comm="python3")
                   >= len(OPERATIONS), 20, "the client's requests in /metrics")
        samples = scrape(port)["s3slower_requests_total"]
        assert not any("container_id" in labels for labels, _ in samples)
    finally:
        stop(tracer)
