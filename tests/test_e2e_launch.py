"""`s3slower run` from any checkout, and what it does when either half fails.

A root user's clone is often unreadable to the service user (/root is 0700):
the aggregator must have everything loaded before it drops root.  Either half
failing -- before ready or after -- ends `run` with one line naming it, a
non-zero status, no traceback, and no half left running.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, need_root_bpf, run_client, wait_until

pytestmark = pytest.mark.e2e

# A failing start must end long before the 30 s the aggregator has to get
# ready: this bound tells "noticed at once" from "timed out".
PROMPT_END_S = 15


@pytest.fixture(scope="module")
def private_checkout():
    """The work tree's sources (tracked and new, not ignored) copied into a
    directory only root can enter."""
    need_root_bpf()
    top = Path(tempfile.mkdtemp(prefix="s3slower-private-"))
    os.chmod(top, 0o700)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if not rel.startswith(("tests/", ".cache/")) and (ROOT / rel).is_file():
            dest = top / "s3slower" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def _start(args, env_extra=None, tmp: Path = None):
    err = open(tmp / "err", "w+")
    out = open(tmp / "out", "w+")
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.Popen([sys.executable, "-m", "s3slower", "run", "--output", "json",
                             "--no-log", *args], stdout=out, stderr=err, env=env, cwd="/")
    return proc, tmp / "out", tmp / "err"


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def _ended_with_one_line(proc, err: Path, *wanted: str) -> str:
    proc.wait(PROMPT_END_S)
    text = err.read_text()
    assert proc.returncode not in (0, None), text
    assert "Traceback" not in text, text
    for w in wanted:
        assert w in text, text
    return text


def test_run_from_a_checkout_the_service_user_cannot_read(private_checkout, moto_http,
                                                          tmp_path):
    env = {"PYTHONPATH": str(private_checkout)}
    where = subprocess.run([sys.executable, "-c", "import s3slower; print(s3slower.__file__)"],
                           env=dict(os.environ, **env), cwd="/", capture_output=True,
                           text=True, check=True).stdout.strip()
    assert where.startswith(str(private_checkout)), where
    proc, out, err = _start([], env, tmp_path)
    try:
        wait_until(lambda: "s3slower: ready" in err.read_text() or proc.poll() is not None,
                   90, "ready")
        assert proc.poll() is None, err.read_text()
        child = _children(proc.pid)
        assert child and _uid(child[0]) != 0, "the aggregator runs unprivileged"
        c = run_client(["curl", "-s", "-o", "/dev/null", f"{moto_http.url}/private-bkt/k"])
        assert c.returncode == 0
        wait_until(lambda: '"bucket": "private-bkt"' in out.read_text(), 30,
                   "the curl request's record")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    text = err.read_text()
    assert proc.returncode == 0 and "Traceback" not in text, text
    assert "s3slower collector stopped" in text and "s3slower aggregator stopped" in text


def test_aggregator_failing_to_start_ends_run_at_once(tmp_path):
    need_root_bpf()
    with socket.socket(socket.AF_INET6) as busy:
        busy.bind(("::", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc, _out, err = _start(["--prometheus", "--port", str(port)], tmp=tmp_path)
        text = _ended_with_one_line(proc, err, "before it was ready")
    assert "s3slower: ready" not in text
    assert sum(line.startswith("s3slower:") for line in text.splitlines()) == 2, text


def test_aggregator_dying_after_ready_ends_run(tmp_path):
    need_root_bpf()
    proc, _out, err = _start([], tmp=tmp_path)
    wait_until(lambda: "s3slower: ready" in err.read_text() or proc.poll() is not None, 90,
               "ready")
    child = _children(proc.pid)
    assert child, err.read_text()
    os.kill(child[0], signal.SIGKILL)
    _ended_with_one_line(proc, err, "the aggregator was killed by signal 9")


def test_collector_failing_to_load_ends_run_and_its_aggregator(tmp_path):
    need_root_bpf()
    proc, _out, err = _start([], {"BCC_KERNEL_SOURCE": str(tmp_path / "no-headers")},
                             tmp=tmp_path)
    wait_until(lambda: _children(proc.pid) or proc.poll() is not None, 30, "the aggregator")
    child = _children(proc.pid)
    text = _ended_with_one_line(proc, err, "cannot load the BPF program")
    for pid in child:
        assert not Path(f"/proc/{pid}").exists() or \
            "zombie" in Path(f"/proc/{pid}/status").read_text(), "aggregator left running"
    assert "s3slower: ready" not in text
