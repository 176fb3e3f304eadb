"""`s3slower run` in a real terminal (tmux, 80 columns): the live table renders
aligned under its header, with a status line, and NO_COLOR means no escapes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from conftest import S3_ENV, VENV_BIN, need_root_bpf, wait_until

pytestmark = pytest.mark.e2e
CLIENT = os.path.join(os.path.dirname(__file__), "clients", "boto3_ops.py")
COLUMNS = ("TIME", "PID", "COMM", "OP", "BUCKET", "KEY", "STATUS", "BYTES", "LAT")


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout


@pytest.fixture
def session():
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    name = "s3s-" + uuid.uuid4().hex[:6]
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def _screen(name: str, escapes: bool = False) -> list[str]:
    args = ["capture-pane", "-p", "-t", name] + (["-e"] if escapes else [])
    return _tmux(*args).splitlines()


@pytest.mark.parametrize("no_color", [True, False])
def test_table_in_80_columns(session, moto_http, tmp_path, no_color):
    need_root_bpf()
    env = "NO_COLOR=1 " if no_color else ""
    cmd = f"{env}{VENV_BIN}/s3slower run --no-log 2>{tmp_path}/err"
    _tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "40", cmd)
    wait_until(lambda: "s3slower: ready" in (tmp_path / "err").read_text()
               if (tmp_path / "err").exists() else False, 90, "the tracer to be ready")
    out = subprocess.run([sys.executable, CLIENT, moto_http.url, "tty-" + uuid.uuid4().hex[:6]],
                         capture_output=True, text=True, env=dict(os.environ, **S3_ENV),
                         timeout=120, check=True)
    pid = json.loads(out.stdout)["pid"]
    rows = wait_until(lambda: (s := _screen(session)) and
                      len([l for l in s if f" {pid} " in l]) >= 8 and s, 20, "8 rows on screen")
    header = next(l for l in rows if all(c in l for c in COLUMNS))
    mine = [l for l in rows if f" {pid} " in l]
    assert all(len(l) <= 80 for l in rows)
    # aligned: cut at the header's column starts, no value crosses a boundary
    # and every always-present column has a value
    starts = [header.index(c) for c in COLUMNS]
    for line in mine:
        line = line.ljust(80)
        cells = [line[a:b] for a, b in zip(starts, starts[1:] + [80])]
        for b in starts[1:]:
            assert line[b - 1] == " ", (header, line)
        for name, cell in zip(COLUMNS, cells):
            if name not in ("BUCKET", "KEY"):
                assert cell.strip(), (name, header, line)
    ops = [l[header.index("OP"):header.index("BUCKET")].strip() for l in mine]
    assert "PutObject" in ops and "GetObject" in ops
    status = [l for l in rows if "req/s" in l]
    assert status and "loss" in status[-1]
    raw = "\n".join(_screen(session, escapes=True))
    has_escape = "\x1b[" in raw
    assert has_escape is (not no_color)
