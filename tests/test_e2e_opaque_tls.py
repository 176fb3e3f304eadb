"""Opaque TLS end to end, as root, real BPF: clients whose TLS s3slower cannot
read -- Java's java.net.http.HttpClient (JSSE) and obstore (Rust, rustls) --
against moto over HTTPS give one `opaque_tls` line per connection (its SNI,
endpoint, stack guess, byte counts), one warning per process on the
tracer's stderr and the opaque metrics; over plain HTTP the same clients
give requests and no such line, and boto3 over HTTPS (OpenSSL, read) none.

moto serves a certificate signed by a CA of this module's own: rustls
(webpki) refuses a self-signed CA certificate as the server's.  The clients
connect through a counting relay, so "one line per connection" is held to
the number of connections the server side saw.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (S3_ENV, VENV_BIN, Server, Tracer, _moto, free_port, need_root_bpf,
                      run_client, wait_port, wait_until)
from test_e2e_documented import scrape, total
from tls_fixtures import CLIENTS, bucket_name, marker_arrives

pytestmark = pytest.mark.e2e

BODY = 200_000
TLS_OVERHEAD = 64 * 1024        # handshakes, records, headers of a few requests: far less


class Relay:
    """127.0.0.1:port -> target port, counting the connections it accepts."""

    def __init__(self, target: int):
        self.target = target
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            u = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    p = {n: d / n for n in ("ca.pem", "ca.key", "leaf.pem", "leaf.key", "leaf.csr",
                             "ext.cnf", "trust.p12")}
    p["ext.cnf"].write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                            "basicConstraints=critical,CA:FALSE\n")
    for cmd in (["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=s3slower test CA", "-keyout", p["ca.key"], "-out", p["ca.pem"]],
                ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                 "-keyout", p["leaf.key"], "-out", p["leaf.csr"]],
                ["openssl", "x509", "-req", "-in", p["leaf.csr"], "-CA", p["ca.pem"], "-CAkey",
                 p["ca.key"], "-CAcreateserial", "-days", "2", "-extfile", p["ext.cnf"],
                 "-out", p["leaf.pem"]],
                ["keytool", "-importcert", "-noprompt", "-file", p["ca.pem"], "-keystore",
                 p["trust.p12"], "-storetype", "PKCS12", "-storepass", "changeit"]):
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    return p


@pytest.fixture(scope="module")
def moto_ca(pki):
    port = free_port()
    proc = _moto(port, ["-c", str(pki["leaf.pem"]), "-k", str(pki["leaf.key"])])
    try:
        wait_port(port)
        yield Server(proc, f"https://localhost:{port}", pki["ca.pem"])
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    need_root_bpf()
    port = free_port()
    t = Tracer(tmp_path_factory.mktemp("opaque"), ["--prometheus", "-p", str(port),
                                                   "--host", "127.0.0.1"])
    t.prom_port = port
    try:
        yield t
    finally:
        t.stop()


def _java(base: str, bucket: str, pki=None) -> dict:
    trust = [f"-Djavax.net.ssl.trustStore={pki['trust.p12']}",
             "-Djavax.net.ssl.trustStorePassword=changeit"] if pki else []
    out = run_client(["java", *trust, str(CLIENTS / "JavaS3Ops.java"), base, bucket, str(BODY)])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _obstore(server: Server, base: str, bucket: str) -> dict:
    """obstore cannot create buckets: boto3 does, here, straight to the server."""
    pytest.importorskip("obstore", reason="tests/setup-test-tools.sh installs obstore")
    import boto3
    ca = server.ca
    boto3.client("s3", endpoint_url=server.url.replace("localhost", "127.0.0.1"),
                 verify=str(ca) if ca else None, region_name="us-east-1",
                 aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    env = {"SSL_CERT_FILE": str(ca)} if ca else {}
    out = run_client([str(VENV_BIN / "python"), str(CLIENTS / "obstore_ops.py"), base, bucket,
                      str(BODY)], env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _opaque_lines(traced, pid: int, n: int) -> list[dict]:
    wait_until(lambda: len(traced.opaque({pid})) >= n, 20, f"{n} opaque_tls lines of {pid}")
    marker_arrives(traced)              # and nothing more of it is on the way
    return traced.opaque({pid})


def _check_opaque(traced, out: dict, relay: Relay, stack: str, comm: str) -> list[dict]:
    pid = out["pid"]
    lines = _opaque_lines(traced, pid, relay.accepted)
    assert len(lines) == relay.accepted > 0, lines
    for d in lines:
        assert (d["kind"], d["comm"], d["endpoint"], d["sni"], d["stack"], d["open"]) == \
            ("opaque_tls", comm, f"127.0.0.1:{relay.port}", "localhost", stack, False), d
        assert d["bytes_sent"] > 0 and d["bytes_received"] > 0 and d["duration_ms"] > 0, d
        assert d["hostname"] and d["timestamp"].endswith("Z"), d
    sent = sum(d["bytes_sent"] for d in lines)
    received = sum(d["bytes_received"] for d in lines)
    assert out["body_sent"] < sent < out["body_sent"] + TLS_OVERHEAD, lines
    assert out["body_received"] < received < out["body_received"] + TLS_OVERHEAD, lines
    assert not traced.records_for({pid}), "no request of it can be read"
    warnings = [line for line in traced.err_path.read_text().splitlines()
                if f"pid {pid} (" in line]
    assert warnings == [f"s3slower: pid {pid} ({comm}) speaks TLS to localhost:{relay.port} "
                        f"through a library s3slower cannot read (stack: {stack})"], warnings
    samples = wait_until(lambda: (s := scrape(traced.prom_port)) and total(
        s, "s3slower_opaque_tls_connections_total", comm=comm, stack=stack) >= len(lines)
        and s, 20, "the opaque connections in /metrics")
    assert total(samples, "s3slower_opaque_tls_bytes_total", comm=comm,
                 direction="sent") >= sent
    assert total(samples, "s3slower_opaque_tls_bytes_total", comm=comm,
                 direction="received") >= received
    return lines


def _via_relay(server: Server):
    relay = Relay(int(server.url.rsplit(":", 1)[1]))
    return relay, f"{server.url.split('://')[0]}://localhost:{relay.port}"


def test_java_httpclient_over_https_is_opaque(traced, moto_ca, pki):
    relay, base = _via_relay(moto_ca)
    try:
        out = _java(base, bucket_name("java"), pki)
    finally:
        relay.close()
    assert out["statuses"][:2] == [200, 200], out
    _check_opaque(traced, out, relay, "java", "java")


def test_obstore_over_https_is_opaque(traced, moto_ca):
    relay, base = _via_relay(moto_ca)
    try:
        out = _obstore(moto_ca, base, bucket_name("obstore"))
    finally:
        relay.close()
    assert out["get_ok"] and out["head_size"] == BODY, out
    _check_opaque(traced, out, relay, "rustls", "python")


def _plain(traced, out: dict, ops: list[str]) -> None:
    recs = traced.wait_records({out["pid"]}, len(ops))
    marker_arrives(traced)
    recs = sorted(traced.records_for({out["pid"]}), key=lambda r: r["timestamp"])
    assert [r["operation"] for r in recs] == ops, recs
    assert all(r["complete"] and r["tls"] == "none" for r in recs), recs
    assert not traced.opaque({out["pid"]})


def test_java_and_obstore_over_plain_http_are_requests(traced, moto_http):
    out = _java(moto_http.url.replace("127.0.0.1", "localhost"), bucket_name("javahttp"))
    _plain(traced, out, ["CreateBucket", "PutObject", "GetObject", "DeleteObject",
                         "DeleteBucket"])
    assert [r["status_code"] for r in sorted(traced.records_for({out["pid"]}),
                                             key=lambda r: r["timestamp"])] == out["statuses"]
    out = _obstore(moto_http, moto_http.url, bucket_name("obshttp"))
    _plain(traced, out, ["PutObject", "GetObject", "HeadObject", "DeleteObjects"])


def test_boto3_over_https_is_read_not_opaque(traced, moto_ca):
    out = run_client([str(VENV_BIN / "python"), str(CLIENTS / "boto3_ops.py"),
                      moto_ca.url, bucket_name("boto3"), str(moto_ca.ca)])
    pid = json.loads(out.stdout)["pid"]
    recs = traced.wait_records({pid}, 3)
    marker_arrives(traced)
    assert all(r["tls"] == "openssl" for r in traced.records_for({pid})), recs
    assert traced.opaque({pid}) == []


# A TLS handshake through memory BIOs on a plain socket (OpenSSL's handshake
# is not probed, and no SSL_read/SSL_write ever runs), then an exit with the
# connection open: the kernel closes it, no close() is seen.
HANDSHAKE_THEN_EXIT = r"""
import os, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        s.sendall(out.read())
        inc.write(s.recv(65536))
s.sendall(out.read())
print(os.getpid(), flush=True)
os._exit(0)
"""


def test_a_connection_open_at_exit_is_reported(traced, moto_ca):
    port = moto_ca.url.rsplit(":", 1)[1]
    out = run_client([str(VENV_BIN / "python"), "-c", HANDSHAKE_THEN_EXIT, port,
                      str(moto_ca.ca)])
    pid = int(out.stdout.split()[0])
    [d] = _opaque_lines(traced, pid, 1)
    assert (d["endpoint"], d["sni"], d["stack"], d["open"]) == \
        (f"127.0.0.1:{port}", "localhost", "unknown", False), d
    assert 200 < d["bytes_sent"] < 4096 and 1000 < d["bytes_received"] < 16384, d
