"""Shared fixtures: real S3 servers (moto, HTTP and HTTPS) and the real tracer.

End-to-end tests need root and BPF; they are marked `e2e` and skip with a
reason when either is missing -- on a developer's machine only: with
CI=true (what .ci/run runs under) a skipped test is a failed test, because
CI's machine has everything the project's set-up installs.  Every wait has a
timeout; nothing sleeps to make time pass.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
          "NO_PROXY": "*"}


def skips_fail() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_is_failure(report) -> None:
    if skips_fail() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skip (pytest.skip, importorskip, a skip mark) fails."""
    _skip_is_failure((yield).get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """... and so does a whole module skipped as it is collected."""
    _skip_is_failure((yield).get_result())


@contextlib.contextmanager
def readable_dir(prefix: str):
    """A directory the unprivileged aggregator can reach too (pytest's
    tmp_path lies under a root-only directory); removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def wait_until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def need_root_bpf():
    if os.geteuid() != 0:
        pytest.skip("end-to-end tracing needs root")
    try:
        import bcc  # noqa: F401
    except ImportError:
        pytest.skip("python3-bpfcc is not installed")


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    os.chmod(d, 0o755)
    for p in (cert, key):
        os.chmod(p, 0o644)
    return cert, key


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, ca: Path | None):
        self.proc, self.url, self.ca = proc, url, ca


def _moto(port: int, extra: list[str]) -> subprocess.Popen:
    env = dict(os.environ, **S3_ENV)
    return subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port),
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)


@pytest.fixture(scope="session")
def moto_http():
    port = free_port()
    proc = _moto(port, [])
    try:
        wait_port(port)
        yield Server(proc, f"http://127.0.0.1:{port}", None)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def moto_https(tls_cert):
    cert, key = tls_cert
    port = free_port()
    proc = _moto(port, ["-c", str(cert), "-k", str(key)])
    try:
        wait_port(port)
        yield Server(proc, f"https://127.0.0.1:{port}", cert)
    finally:
        proc.terminate()
        proc.wait(10)


class Tracer:
    """`s3slower run --output json` as a user would start it (after `prefix`,
    a command that execs it)."""

    def __init__(self, tmp: Path, args: list[str], prefix: tuple[str, ...] = ()):
        self.out_path = tmp / "tracer.out"
        self.err_path = tmp / "tracer.err"
        self.out = open(self.out_path, "w")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [*prefix, str(VENV_BIN / "s3slower"), "run", "--output", "json", "--no-log", *args],
            stdout=self.out, stderr=self.err)
        try:
            wait_until(lambda: "s3slower: ready" in self.err_path.read_text()
                       or self.proc.poll() is not None, 90, "the tracer to be ready")
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError("tracer died: " + self.err_path.read_text()[-2000:])

    def lines(self) -> list[dict]:
        """Every JSON line: request records and lines of other kinds."""
        lines = self.out_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def records(self) -> list[dict]:
        """The request records (lines without a "kind", e.g. not opaque_tls)."""
        return [d for d in self.lines() if "kind" not in d]

    def opaque(self, pids) -> list[dict]:
        return [d for d in self.lines() if d.get("kind") == "opaque_tls" and d["pid"] in pids]

    def records_for(self, pids) -> list[dict]:
        pids = set(pids)
        return [r for r in self.records() if r["pid"] in pids]

    def wait_records(self, pids, n: int, timeout: float = 15.0) -> list[dict]:
        return wait_until(lambda: (r := self.records_for(pids)) and len(r) >= n and r,
                          timeout, f"{n} records from pids {sorted(pids)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()            # cannot be refused: wait it out
                self.proc.wait()
        self.out.close()
        self.err.close()


@pytest.fixture(scope="module")
def tracer(tmp_path_factory):
    need_root_bpf()
    t = Tracer(tmp_path_factory.mktemp("tracer"), [])
    try:
        yield t
    finally:
        t.stop()


def run_client(args: list[str], env_extra: dict | None = None, timeout: float = 120):
    env = dict(os.environ, **S3_ENV, **(env_extra or {}))
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout,
                          check=True)
