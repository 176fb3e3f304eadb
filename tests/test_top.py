"""`--output top` without tmux: the model (windows, quantiles, groupings, sorting,
caps), the screen's lines, the keys, and the sink on a real pseudo-terminal."""
from __future__ import annotations

import os
import select
import signal
import termios
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from test_terminal import rec

from s3slower.aggregator.records import Record
from s3slower.aggregator.terminal import StatusSnapshot, display_width
from s3slower.aggregator.top import LEAVE, TopTerminal, press
from s3slower.aggregator.topmodel import (OTHER, WINDOW_S, Grouping, Slot, Sort, TopModel,
                                          is_throttle, quantile_ns)
from s3slower.aggregator.topview import MARK, View, screen
from s3slower.common.losses import Ledger, Loss

S = 1_000_000_000
T0 = 1_700_000_000 * S


@dataclass(slots=True)
class ClientRecord(Record):
    """A record with the `client` field issue 15.3 adds."""
    client: str = ""


def by_key(rows):
    return {r.key: r for r in rows}


# -- the model -------------------------------------------------------------------------

def test_quantiles_within_the_histograms_precision_and_exact_when_all_agree():
    slot = Slot(0)
    for ms in range(1, 101):                       # 1 .. 100 ms
        slot.add(ms * 1_000_000, 0)
    assert quantile_ns(slot, 0.5) == pytest.approx(50e6, rel=0.045)
    assert quantile_ns(slot, 0.99) == pytest.approx(99e6, rel=0.045)
    same = Slot(0)
    for _ in range(7):
        same.add(12_345_678, 0)
    assert quantile_ns(same, 0.5) == quantile_ns(same, 0.99) == 12_345_678
    assert quantile_ns(Slot(0), 0.5) is None
    huge = Slot(0)
    huge.add(10**18, 0)                             # past the last bucket: still its max
    assert quantile_ns(huge, 0.99) == 10**18


def test_rates_and_quantiles_slide_with_the_window_and_totals_do_not():
    m = TopModel(T0)
    assert m.span_s(T0) == 1 and m.span_s(T0 + 3 * S + 5) == 4
    for _ in range(20):
        m.add(rec(latency_ns=100_000_000, response_size=1000), T0)
    for _ in range(10):
        m.add(rec(latency_ns=1_000_000, response_size=0), T0 + 9 * S)
    (row,) = m.rows(Grouping.BUCKET_OP, Sort.RATE, T0 + 9 * S)
    assert m.span_s(T0 + 9 * S) == WINDOW_S
    assert row.requests == 30 and row.rate == 3.0 and row.bytes_per_s == 2000.0
    assert row.p99_ms == pytest.approx(100, rel=0.045)
    (row,) = m.rows(Grouping.BUCKET_OP, Sort.RATE, T0 + 10 * S)   # the first 20 slid out
    assert row.requests == 30 and row.rate == 1.0 and row.bytes_per_s == 0
    assert row.p99_ms == pytest.approx(1, rel=0.045)
    (row,) = m.rows(Grouping.BUCKET_OP, Sort.RATE, T0 + 60 * S)
    assert row.requests == 30 and row.rate == 0 and row.p50_ms is None and row.p99_ms is None
    # memory: a group keeps at most one slot per second of the window
    for s in range(100):
        m.add(rec(), T0 + (100 + s) * S)
    assert max(len(g.slots) for g in m.groups[Grouping.BUCKET_OP].values()) == WINDOW_S


def test_errors_and_throttles():
    assert is_throttle(rec(status_code=503, error_code="SlowDown"))
    assert is_throttle(rec(status_code=429, error_code=""))
    assert is_throttle(rec(status_code=500, error_code="SlowDown"))
    assert not is_throttle(rec(status_code=503, error_code="ServiceUnavailable"))
    assert not is_throttle(rec(status_code=404, error_code="NoSuchKey"))
    m = TopModel(T0)
    for r in (rec(status_code=404, error_code="NoSuchKey"), rec(status_code=429),
              rec(status_code=503, error_code="SlowDown"), rec(), rec(complete=False)):
        m.add(r, T0)
    (row,) = m.rows(Grouping.BUCKET_OP, Sort.RATE, T0)
    assert (row.requests, row.errors, row.throttles) == (5, 4, 2)


def test_each_grouping_keys_its_rows():
    m = TopModel(T0)
    m.add(rec(bucket="a", operation="GetObject", endpoint="e1:9000", pid=1, comm="aws"), T0)
    m.add(rec(bucket="a", operation="PutObject", endpoint="e1:9000", pid=2, comm="python3"),
          T0)
    m.add(rec(bucket="", operation="ListBuckets", endpoint="", pid=2, comm="python3"), T0)
    fields = {f: getattr(rec(), f) for f in Record.__slots__}
    m.add(ClientRecord(**dict(fields, comm="python3", client="boto3")), T0)
    m.add(ClientRecord(**dict(fields, pid=1, comm="aws", client="other")), T0)
    keys = {g: set(by_key(m.rows(g, Sort.NAME, T0))) for g in Grouping}
    assert keys[Grouping.BUCKET_OP] == {("a", "GetObject"), ("a", "PutObject"),
                                        ("-", "ListBuckets"), ("bucket", "GetObject")}
    assert keys[Grouping.ENDPOINT] == {("e1:9000",), ("-",), ("s3.local:9000",)}
    assert keys[Grouping.PROCESS] == {("1", "aws", "h1"), ("2", "python3", "h1"),
                                      ("4242", "python3", "h1")}
    # client: the record's `client` when one was recognised, else its comm
    assert keys[Grouping.CLIENT] == {("aws",), ("python3",), ("boto3",)}
    clients = by_key(m.rows(Grouping.CLIENT, Sort.NAME, T0))
    assert (clients[("python3",)].requests, clients[("aws",)].requests) == (2, 2)


def test_sorting_largest_first_names_a_to_z_reverse_and_other_last():
    m = TopModel(T0, max_groups=3)
    for bucket, n, ms in (("b1", 1, 50), ("b2", 3, 10), ("b3", 2, 90)):
        for _ in range(n):
            m.add(rec(bucket=bucket, latency_ns=ms * 1_000_000), T0)
    m.add(rec(bucket="b4"), T0)                    # over the cap: "other"

    def order(sort, reverse=False):
        return [r.key[0] for r in m.rows(Grouping.BUCKET_OP, sort, T0, reverse)]
    assert order(Sort.RATE) == ["b2", "b3", "b1", "other"]
    assert order(Sort.P99) == ["b3", "b1", "b2", "other"]
    assert order(Sort.NAME) == ["b1", "b2", "b3", "other"]
    assert order(Sort.RATE, reverse=True) == ["b1", "b3", "b2", "other"]
    assert order(Sort.NAME, reverse=True) == ["b3", "b2", "b1", "other"]


def test_groups_are_capped_and_the_rest_folds_into_other():
    m = TopModel(T0, max_groups=3)
    for i in range(5):                             # 3 groups, then 2 into other
        m.add(rec(bucket=f"b{i}"), T0)
    rows = by_key(m.rows(Grouping.BUCKET_OP, Sort.NAME, T0))
    assert len(rows) == 4 and rows[OTHER].requests == 2 and rows[OTHER].other
    # b0 idles past the window: a new bucket takes its place, b0's numbers go to other
    later = T0 + (WINDOW_S + 1) * S
    m.add(rec(bucket="b1"), later)
    m.add(rec(bucket="b2"), later)
    m.add(rec(bucket="b9"), later)
    rows = by_key(m.rows(Grouping.BUCKET_OP, Sort.NAME, later))
    assert set(rows) == {("b1", "GetObject"), ("b2", "GetObject"), ("b9", "GetObject"), OTHER}
    assert rows[OTHER].requests == 3 and rows[OTHER].rate == 0
    assert sum(r.requests for r in rows.values()) == m.total_row(later).requests == 8
    for g in Grouping:                             # every grouping obeys the cap
        assert len(m.groups[g]) <= 3


# -- the screen ------------------------------------------------------------------------

def _screen(m, view, now, **kw):
    status = StatusSnapshot(1.0, 3, 0, {"ringbuf": 0})
    return screen(m.rows(view.grouping, view.sort, now, view.reverse), view, m.span_s(now),
                  status, **kw)


def test_the_screen_is_exactly_height_lines_of_width_columns():
    m = TopModel(T0)
    for i in range(40):
        m.add(rec(bucket=f"bucket-{i:02}", key="k", response_size=2048), T0)
    lines = _screen(m, View(), T0)
    assert len(lines) == 24 and all(display_width(line) == 80 for line in lines)
    assert lines[0].startswith("s3slower top  40 bucket/op rows  sort req/s")
    assert lines[0].rstrip().endswith("over the last 1s")
    assert lines[1].split() == ["BUCKET", "OPERATION", "REQS", MARK + "REQ/s", "P50", "ms",
                                "P99", "ms", "ERR", "THR", "BYTES/s"]
    assert lines[-2].startswith("keys: q quit  g grouping  s sort  r reverse")
    assert lines[-1].startswith("-- 1.0 req/s  3 requests  0 errors  loss 0 ")
    assert lines[-3] == "+21 more".ljust(80)           # 19 rows fit, the 20th says so
    assert lines[2].split() == ["bucket-00", "GetObject", "1", "1.0", "12.3", "12.3", "0", "0",
                                "2.0K"]
    wide = _screen(m, View(Grouping.PROCESS, Sort.NAME), T0, width=132, height=10)
    assert len(wide) == 10 and all(len(line) == 132 for line in wide)
    assert wide[1].split()[:3] == [MARK + "PID", "COMM", "HOST"]
    narrow = _screen(m, View(), T0, width=40, height=24)
    assert all(display_width(line) == 40 for line in narrow)
    for h in range(5):                             # tiny: the status line goes last
        tiny = _screen(m, View(), T0, height=h)
        assert len(tiny) == h and (h == 0 or tiny[-1].startswith("-- "))
    assert _screen(m, View(), T0, keys=False)[-2].startswith("keys: none")
    coloured = _screen(m, View(), T0, color=True)
    assert coloured[1].startswith("\x1b[1m") and len(coloured) == 24


def test_keys_switch_grouping_and_sort_and_reverse():
    v = View()
    seen = []
    for _ in Grouping:
        seen.append(v.grouping)
        v = press(v, "g")
    assert seen == list(Grouping) and v.grouping is Grouping.BUCKET_OP
    assert press(View(), "s").sort is Sort.P99
    assert press(press(View(), "r"), "r") == View() and press(View(), "r").reverse
    assert press(View(), "x") == View()


# -- the sink on a pseudo-terminal ----------------------------------------------------------

class Pty:
    def __init__(self):
        self.master, slave = os.openpty()
        self.tty = os.fdopen(slave, "w")
        self.buf = ""

    def read_until(self, pred, timeout=10.0) -> str:
        while not pred(self.buf):
            ready, _, _ = select.select([self.master], [], [], timeout)
            assert ready, f"nothing more from the pty; got {self.buf[-500:]!r}"
            self.buf += os.read(self.master, 65536).decode()
        return self.buf


def test_top_on_a_pty_draws_reads_keys_quits_and_gives_the_terminal_back():
    pty = Pty()
    before = termios.tcgetattr(pty.tty.fileno())
    quit_asked = threading.Event()
    now = [T0]
    top = TopTerminal(pty.tty, pty.tty, clock=lambda: now[0], on_quit=quit_asked.set,
                      size=lambda: (80, 24))
    snap = SimpleNamespace(ledger=Ledger.of({Loss.RINGBUF: 3}))
    try:
        for _ in range(3):
            top.emit(rec(bucket="photos"))
        top.tick(snap, T0)
        out = pty.read_until(lambda b: "photos" in b and "loss 3" in b)
        assert out.startswith("\x1b[?1049h")                 # the alternate screen
        assert "\x1b[1;1Hs3slower top  1 bucket/op rows" in out
        assert "\x1b[25;" not in out                         # nothing below line 24
        mode = termios.tcgetattr(pty.tty.fileno())
        assert not mode[3] & (termios.ICANON | termios.ECHO) and mode[3] & termios.ISIG
        os.write(pty.master, b"g")
        pty.read_until(lambda b: "client rows" in b)
        os.write(pty.master, b"s")
        pty.read_until(lambda b: "sort p99" in b)
        clears = pty.buf.count("\x1b[2J")
        os.kill(os.getpid(), signal.SIGWINCH)              # a resize: cleared, drawn again
        pty.read_until(lambda b: b.count("\x1b[2J") == clears + 1 and b.endswith("\x1b[H"))
        os.kill(os.getpid(), signal.SIGCONT)               # fg after Ctrl-Z: taken again
        pty.read_until(lambda b: b.count("\x1b[?1049h") == 2 and b.endswith("\x1b[H"))
        os.write(pty.master, b"q")
        assert quit_asked.wait(10)
    finally:
        top.close()
    pty.read_until(lambda b: b.endswith(LEAVE))
    assert termios.tcgetattr(pty.tty.fileno()) == before
    assert signal.getsignal(signal.SIGWINCH) == signal.SIG_DFL
    assert top.statistics().requests == 3 and top.statistics().dropped == 0
    pty.tty.close()
    os.close(pty.master)


def test_top_never_touches_the_terminal_before_its_first_tick():
    pty = Pty()
    top = TopTerminal(pty.tty, pty.tty, size=lambda: (80, 24))
    top.emit(rec())
    top.close()                                   # a start that failed: nothing written
    assert not select.select([pty.master], [], [], 0)[0]
    pty.tty.close()
    os.close(pty.master)


def test_counts_fit_their_cells():
    from s3slower.aggregator.topview import human_count
    assert [human_count(n, 5) for n in (0, 99999, 100000, 1234567, 10**12)] == \
        ["0", "99999", "100K", "1234K", "1000G"]
    assert human_count(1234567, 4) == "1M" and human_count(10**20, 4) == "huge"
