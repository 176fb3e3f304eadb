"""`s3slower run` in a real terminal (tmux, 80 columns): the live table renders
aligned under its header, with a status line, and NO_COLOR means no escapes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from conftest import S3_ENV, VENV_BIN, need_root_bpf, wait_until
from tmuxterm import alive, terminal, tree

pytestmark = pytest.mark.e2e
CLIENT = os.path.join(os.path.dirname(__file__), "clients", "boto3_ops.py")
COLUMNS = ("TIME", "PID", "COMM", "OP", "BUCKET", "KEY", "STATUS", "BYTES", "LAT")


@pytest.fixture
def session():
    yield from terminal()


@pytest.mark.parametrize("no_color", [True, False])
def test_table_in_80_columns(session, moto_http, tmp_path, no_color):
    need_root_bpf()
    env = "NO_COLOR=1 " if no_color else ""
    cmd = f"{env}{VENV_BIN}/s3slower run --no-log 2>{tmp_path}/err"
    session.start(cmd)
    wait_until(lambda: "s3slower: ready" in (tmp_path / "err").read_text()
               if (tmp_path / "err").exists() else False, 90, "the tracer to be ready")
    out = subprocess.run([sys.executable, CLIENT, moto_http.url, "tty-" + uuid.uuid4().hex[:6]],
                         capture_output=True, text=True, env=dict(os.environ, **S3_ENV),
                         timeout=120, check=True)
    pid = json.loads(out.stdout)["pid"]
    rows = wait_until(lambda: (s := session.screen()) and
                      len([l for l in s if f" {pid} " in l]) >= 8 and s, 20, "8 rows on screen")
    header = next(l for l in rows if all(c in l for c in COLUMNS))
    mine = [l for l in rows if f" {pid} " in l]
    assert all(len(l) <= 80 for l in rows)
    # aligned: in every column, all rows' values start where the header label
    # starts (left-aligned) or all end where it ends (right-aligned)
    labels = ("TIME", "PID", "COMM", "OP", "STATUS", "BYTES", "LAT ms")
    for label in labels:
        a = header.index(label)
        b = a + len(label)
        rows_padded = [l.ljust(81) for l in mine]
        left = all(r[a] != " " and (a == 0 or r[a - 1] == " ") for r in rows_padded)
        right = all(r[b - 1] != " " and r[b] == " " for r in rows_padded)
        assert left or right, (label, header, mine)
    ops = [l[header.index("OP"):header.index("BUCKET")].strip() for l in mine]
    assert "PutObject" in ops and "GetObject" in ops
    screen = wait_until(lambda: (s := session.screen()) and any("req/s" in l for l in s) and s,
                        20, "the status line")
    status = [l for l in screen if "req/s" in l]
    assert "errors" in status[-1] and "loss" in status[-1] and len(status[-1]) <= 80
    # on a TTY the status line is rewritten in place: one, the last line, the
    # cursor at its start, even after a later status counted this traffic
    screen = wait_until(lambda: (s := session.screen()) and _counted(s) >= 8 and s, 30,
                        "a status line that counted the client's requests")
    status = [i for i, l in enumerate(screen) if "req/s" in l]
    assert len(status) == 1 and not any(l.strip() for l in screen[status[0] + 1:]), screen
    assert int(session.show("#{cursor_y}")) == status[0]
    raw = "\n".join(session.screen(escapes=True))
    has_escape = "\x1b[" in raw
    assert has_escape is (not no_color)


def _counted(screen: list[str]) -> int:
    """The requests the status line on `screen` counted (-1: none shown)."""
    words = next((l.split() for l in screen if "req/s" in l), [])
    return int(words[words.index("requests") - 1]) if "requests" in words else -1


@pytest.mark.parametrize("output", ["table", "top"])
def test_closing_the_terminal_stops_the_tracer(session, tmp_path, output):
    """SIGHUP re-reads the configuration, but a terminal's hangup (the window
    closed) ends `run` and its aggregator cleanly, with their summaries."""
    need_root_bpf()
    err = tmp_path / "err"
    session.start(f"{VENV_BIN}/s3slower run --no-log --output {output} 2>{err}")
    wait_until(lambda: err.exists() and "s3slower: ready" in err.read_text(), 90,
               "the tracer to be ready")
    procs = tree(session.panes[0])       # the pane's process (run) and what it started
    assert len(procs) >= 2, "run and its aggregator"
    session.kill()
    wait_until(lambda: not alive(procs), 120, "run and its aggregator to end")
    text = err.read_text()
    assert "s3slower collector stopped: " in text and "s3slower aggregator stopped: " in text, text
    assert "Traceback" not in text and "Exception in thread" not in text, text
