"""`s3slower run --output top` in a real terminal (tmux at 80x24, a server of
its own): real boto3 traffic against moto shows as the right rows and numbers,
the screen never scrolls, keys switch the grouping and the sort, a resize
redraws, `q` ends the whole run and gives the terminal back; Ctrl-C too; and
stdout that is no terminal is one line of error."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from conftest import S3_ENV, VENV_BIN, need_root_bpf, readable_dir, wait_until
from tmuxterm import terminal

from s3slower.aggregator.terminal import human_bytes

pytestmark = pytest.mark.e2e
CLIENT = os.path.join(os.path.dirname(__file__), "clients", "boto3_top.py")
TARGETS = """targets:
  - id: top
    match: {type: cmdline_substring, value: boto3_top.py}
"""


@pytest.fixture
def term():
    yield from terminal("top")


@pytest.fixture
def shared_dir():
    with readable_dir("s3slower-top-") as d:
        yield d


def start_top(term, shared_dir, width=80, height=24) -> None:
    """The tracer of the test client only (others' traffic stays off the
    screen); after it ends, the shell says its status and the tty's modes."""
    (shared_dir / "targets.yml").write_text(TARGETS)
    err, after = shared_dir / "err", shared_dir / "after"
    term.start(f"{VENV_BIN}/s3slower run --no-log --output top --targets "
               f"{shared_dir}/targets.yml 2>{err}; echo TOP-EXITED $?; stty -a >{after}; "
               "exec sleep 600", width, height)
    wait_until(lambda: err.exists() and "s3slower: ready" in err.read_text(), 90,
               "the tracer to be ready")
    wait_until(lambda: term.screen()[0].startswith("s3slower top"), 20, "the top screen")


def rows_of(screen: list[str], prefix: str) -> dict[tuple[str, str], list[str]]:
    """(bucket, operation) -> the row's numbers, for the test's buckets."""
    return {(w[0], w[1]): w[2:] for w in (line.split() for line in screen[2:-2])
            if w and w[0].startswith(prefix)}


def span_of(screen: list[str]) -> int:
    """The seconds the rates cover, from the title: "... over the last 10s"."""
    return int(screen[0].split()[-1].rstrip("s"))


def test_top_in_tmux_at_80x24(term, moto_http, shared_dir):
    need_root_bpf()
    start_top(term, shared_dir)
    assert term.show("#{alternate_on} #{cursor_flag}") == "1 0"
    prefix = "top-" + uuid.uuid4().hex[:6]
    out = subprocess.run([sys.executable, CLIENT, moto_http.url, prefix], capture_output=True,
                         text=True, env=dict(os.environ, **S3_ENV), timeout=120, check=True)
    did = json.loads(out.stdout)
    want = {(b, op): (n, err, sent) for b, op, n, err, sent in did["rows"]}
    assert len(want) == 7 and sum(n for n, _, _ in want.values()) == 22

    def shown(screen):
        rows = rows_of(screen, prefix)
        return {k: int(v[0]) for k, v in rows.items()} == {k: w[0] for k, w in want.items()}
    screen = wait_until(lambda: (s := term.screen()) and shown(s) and s, 30,
                        f"the client's rows on screen: {did}")
    # the frame: 24 lines of at most 80 columns, title, header, keys, loss line
    assert len(screen) == 24 and all(len(line) <= 80 for line in screen)
    assert screen[0].startswith("s3slower top  7 bucket/op rows  sort req/s")
    assert screen[1].split()[:4] == ["BUCKET", "OPERATION", "REQS", "*REQ/s"]
    assert screen[-2].startswith("keys: q quit  g grouping  s sort  r reverse")
    assert screen[-1].startswith("-- ") and "22 requests  2 errors  loss 0" in screen[-1]
    span = span_of(screen)
    rows = rows_of(screen, prefix)
    for key, (n, errors, sent) in want.items():
        reqs, rate, p50, p99, err, thr, bps = rows[key]
        assert (int(err), int(thr)) == (errors, 0), (key, rows[key])
        assert rate == f"{n / span:.1f}", (key, rows[key], span)
        assert 0 < float(p50) <= float(p99), (key, rows[key])
        if sent:
            assert bps == human_bytes(sent // span), (key, rows[key], span)
    assert rows[(prefix + "-a", "GetObject")][4] == "2"         # the NoSuchKey pair
    # sorted by req/s, largest first (ties by name)
    order = [k for k, _ in sorted(want.items(), key=lambda kv: (-kv[1][0], kv[0]))]
    assert list(rows) == order

    # g: the next grouping (client: the records' client, else their comm)
    term.keys("g")
    screen = wait_until(lambda: (s := term.screen()) and "client rows" in s[0] and s, 20,
                        "the client grouping")
    assert screen[1].split()[0] == "CLIENT" and len(screen) == 24
    (mine,) = [line.split() for line in screen[2:-2] if line.strip()]
    assert mine[0] in (did["comm"], "boto3") and mine[1] == "22" and mine[5] == "2"
    # g g g: round to bucket/op; s: sorted by p99 instead
    term.keys("g", "g", "g", "s")
    screen = wait_until(lambda: (s := term.screen()) and "bucket/op rows  sort p99" in s[0]
                        and s, 20, "bucket/op rows sorted by p99")
    assert "*P99" in screen[1]
    p99s = [float(v[3]) for v in rows_of(screen, prefix).values()]
    assert p99s == sorted(p99s, reverse=True) and len(p99s) == 7
    term.keys(*"ssssss")                       # p50 errors throttles bytes/s requests name
    screen = wait_until(lambda: (s := term.screen()) and "sort name" in s[0] and s, 20,
                        "rows sorted by name")
    assert list(rows_of(screen, prefix)) == sorted(want) and screen[1].startswith("*BUCKET")

    # a resize (SIGWINCH): the frame fits the new size at once
    term.tmux("resize-window", "-t", term.name, "-x", "100", "-y", "30")
    screen = wait_until(lambda: (s := term.screen()) and len(s) == 30 and
                        s[-1].startswith("-- ") and len(s[-1]) == 100 and s, 20,
                        "a 100x30 frame")
    assert screen[0].startswith("s3slower top") and len(rows_of(screen, prefix)) == 7

    # q: the whole run ends, as on Ctrl-C, and the terminal is the shell's again
    term.keys("q")
    quit_and_restored(term, shared_dir)


def quit_and_restored(term, shared_dir) -> None:
    screen = wait_until(lambda: (s := term.screen()) and any("TOP-EXITED" in l for l in s)
                        and s, 60, "s3slower run to end")
    assert "TOP-EXITED 0" in screen and not any("s3slower top" in l for l in screen), screen
    assert term.show("#{alternate_on} #{cursor_flag}") == "0 1"
    after = wait_until(lambda: (shared_dir / "after").exists() and
                       (shared_dir / "after").read_text(), 20, "stty -a")
    modes = after.split()
    assert "icanon" in modes and "echo" in modes and "isig" in modes, after
    err = (shared_dir / "err").read_text()
    assert "s3slower collector stopped: " in err and "s3slower aggregator stopped: " in err, err
    assert "Traceback" not in err and "Exception in thread" not in err, err


def test_ctrl_c_quits_top_cleanly(term, shared_dir):
    need_root_bpf()
    start_top(term, shared_dir)
    term.keys("C-c")
    quit_and_restored(term, shared_dir)


def test_top_needs_a_terminal():
    out = subprocess.run([str(VENV_BIN / "s3slower"), "run", "--output", "top", "--no-log"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == ("s3slower: --output top needs a terminal and stdout is not one; "
                          "use --output table, simple or json\n")
