"""Terminal view: table geometry, colour rules, status line, simple/json, non-blocking writer."""
from __future__ import annotations

import datetime as dt
import io
import json
import threading
from types import SimpleNamespace

import pytest

from s3slower.aggregator.records import Record
from s3slower.common.losses import Ledger, Loss
from s3slower.aggregator.terminal import (COLUMNS, WRITE_BATCH_LINES, JsonRenderer,
                                          SimpleRenderer, StatusSnapshot, TableRenderer,
                                          TerminalWriter, display_width, make_renderer,
                                          status_line, terminal_width, use_color)

UTC = dt.timezone.utc


def rec(**kw) -> Record:
    fields = dict(start_wall_ns=1_700_000_000_123_000_000, hostname="h1", pid=4242, tid=4242,
                  comm="aws", method="GET", operation="GetObject", bucket="bucket",
                  key="dir/file.bin", endpoint="s3.local:9000", path="/bucket/dir/file.bin",
                  status_code=200, error_code="", request_size=0, response_size=1500,
                  ttfb_ns=2_000_000, latency_ns=12_345_000, tls="none", complete=True,
                  labels={})
    fields.update(kw)
    return Record(**fields)


ODD_RECORDS = [
    rec(),
    rec(key="x" * 300, bucket="b" * 63, comm="a-very-long-command", pid=4194304),
    rec(operation="CompleteMultipartUpload", response_size=10 << 40, latency_ns=10**15),
    rec(operation="UploadPartCopy", request_size=999, response_size=0, latency_ns=0),
    rec(status_code=0, complete=False, latency_ns=60 * 10**9),
    rec(status_code=503, complete=False, error_code="SlowDown"),
    rec(key="\x1b[2J\x1b]0;pwned\x07evil\nline\r", comm="\t\x00"),
    rec(key="données/日本語のファイル名.txt", bucket="桶"),
    rec(key="", bucket="", operation="ListBuckets"),
]


def separators(renderer: TableRenderer) -> list[int]:
    pos, out = 0, []
    for name, *_ in COLUMNS[:-1]:
        pos += renderer.widths[name]
        out.append(pos)
        pos += 1
    return out


def test_rows_exactly_80_columns_and_aligned():
    t = TableRenderer(width=80, tz=UTC)
    header = t.header()
    assert len(header) == 80 and t.width == 80
    seps = separators(t)
    assert all(header[i] == " " for i in seps)
    assert header.split() == ["TIME", "PID", "COMM", "OP", "BUCKET", "KEY", "STATUS",
                              "BYTES", "LAT", "ms"]
    for r in ODD_RECORDS:
        row = t.row(r)
        assert display_width(row) == 80, row
        if row.isascii():
            assert len(row) == 80 and all(row[i] == " " for i in seps), row
        assert "\x1b" not in row and "\n" not in row and "\r" not in row


def test_row_cells():
    t = TableRenderer(width=80, tz=UTC)
    row = t.row(rec(operation="CompleteMultipartUpload", response_size=5 << 20,
                    latency_ns=1_234_500_000, key="data/2024/part-00001.parquet"))
    assert row.startswith("22:13:20    4242 aws      CompleteMPU bucket    ")
    assert "~" in row and row.split()[5].endswith("part-00001.parquet"[-6:])
    assert row.endswith("   200  5.0M   1234")
    assert t.row(rec(status_code=0, complete=False)).split()[-3] == "-"
    assert t.row(rec(status_code=503, complete=False)).split()[-3] == "503*"


def test_wider_terminal_widens_key_up_to_max_url_length():
    key = "k/" * 100
    narrow, wide = TableRenderer(width=80), TableRenderer(width=120)
    assert wide.widths["KEY"] > narrow.widths["KEY"]
    assert wide.width == 120 and display_width(wide.row(rec(key=key))) == 120
    huge = TableRenderer(width=300, max_url_length=50)
    assert huge.widths["KEY"] == 50
    assert display_width(huge.row(rec(key=key))) == huge.width <= 300
    short = TableRenderer(width=120, max_url_length=20)
    assert short.widths["KEY"] == 20
    assert "CompleteMultipartUpload" in huge.row(rec(operation="CompleteMultipartUpload"))


def test_header_repeats_every_n_rows():
    t = TableRenderer(header_every=3)
    lines = [line for _ in range(7) for line in t.render(rec())]
    headers = [i for i, line in enumerate(lines) if line.startswith("TIME")]
    assert headers == [0, 4, 8]
    assert len(lines) == 10


def test_no_escape_codes_without_colour_and_colours_with_it():
    plain = TableRenderer(color=False, slow_ms=100)
    snap = StatusSnapshot(1.0, 10, 3, {"ringbuf": 2})
    out = [plain.header()] + [plain.row(r) for r in ODD_RECORDS] + plain.status(snap)
    assert not any("\x1b" in line for line in out)
    col = TableRenderer(color=True, slow_ms=100)
    assert col.row(rec(status_code=404)).startswith("\x1b[31m")
    assert col.row(rec(status_code=0, complete=False)).startswith("\x1b[31m")
    assert col.row(rec(latency_ns=150_000_000)).startswith("\x1b[33m")
    assert "\x1b" not in col.row(rec())
    assert "\x1b[31m3 errors" in col.status(snap)[0]


def test_status_line_shows_rate_errors_and_loss_even_when_zero():
    line = status_line(StatusSnapshot(12.34, 100, 0, {}), 80)
    assert len(line) == 80
    assert "12.3 req/s" in line and "100 requests" in line and "0 errors" in line
    assert "loss 0" in line
    line = status_line(StatusSnapshot(0.0, 5, 2, {"ringbuf": 0, "transport": 0}), 80)
    assert "loss 0" in line and "2 errors" in line
    line = status_line(StatusSnapshot(1.0, 5, 0, {"ringbuf": 7, "transport": 3,
                                                  "stream_gap": 0}), 80)
    assert "loss 10 (ringbuf 7, transport 3)" in line and len(line) == 80
    many = {f"source{i}": i + 1 for i in range(30)}
    assert len(status_line(StatusSnapshot(1.0, 5, 0, many), 80)) == 80


def test_use_color_only_on_a_tty_and_never_with_no_color():
    tty = SimpleNamespace(isatty=lambda: True)
    assert use_color(tty, {}) is True
    assert use_color(tty, {"NO_COLOR": "1"}) is False
    assert use_color(tty, {"NO_COLOR": ""}) is False
    assert use_color(tty, {"TERM": "dumb"}) is False
    assert use_color(io.StringIO(), {}) is False
    closed = io.StringIO()
    closed.close()
    assert use_color(closed, {}) is False


def test_terminal_width():
    assert terminal_width(io.StringIO(), {}) == 80
    assert terminal_width(io.StringIO(), {"COLUMNS": "132"}) == 132
    assert terminal_width(io.StringIO(), {"COLUMNS": "junk"}, default=90) == 90


def test_simple_and_json_outputs():
    r = rec(key="a key with spaces", error_code="NoSuchKey", status_code=404)
    (line,) = SimpleRenderer().render(r)
    assert "\n" not in line and line.startswith("2023-11-14T22:13:20.123000Z ")
    assert 'key="a key with spaces"' in line and "status=404" in line
    assert "error=NoSuchKey" in line and "op=GetObject" in line
    assert line.endswith(' request_id="" id2="" region=""')
    (ids,) = SimpleRenderer().render(rec(request_id="4442587FB7D0A2F9", region="eu-west-1",
                                         extended_request_id="vlR7PnpV2Ce81l0PRw6jlUpck7Jo="))
    assert ids.endswith(' request_id=4442587FB7D0A2F9 id2="vlR7PnpV2Ce81l0PRw6jlUpck7Jo="'
                        ' region=eu-west-1')
    (evil,) = SimpleRenderer().render(ODD_RECORDS[6])
    assert "\x1b" not in evil and "\n" not in evil
    (js,) = JsonRenderer().render(r)
    assert json.loads(js) == r.to_json_dict()
    assert SimpleRenderer().status(StatusSnapshot(1, 1, 1, {})) == []
    assert isinstance(make_renderer("table", width=100), TableRenderer)
    with pytest.raises(ValueError):
        make_renderer("xml")


# -- the writer --------------------------------------------------------------------

def test_writer_writes_rows_and_status_lines():
    out = io.StringIO()
    w = TerminalWriter(out, TableRenderer(width=80), status_every_s=5.0)
    stats = SimpleNamespace(ledger=Ledger.of({Loss.RINGBUF: 0}))
    w.tick(stats, 0)
    for _ in range(10):
        w.emit(rec())
    w.emit(rec(status_code=500))
    w.tick(stats, 2 * 10**9)                      # not due yet
    w.tick(stats, 5 * 10**9)
    w.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + 11 + 1 and all(len(line) == 80 for line in lines)
    assert lines[-1].startswith("-- 2.2 req/s  11 requests  1 errors  loss 0 ")
    s = w.statistics()
    assert (s.requests, s.errors, s.written_lines, s.dropped_lines) == (11, 1, 13, 0)


class BlockedStream:
    """A stdout whose reader went away to lunch: write() waits on an event."""

    def __init__(self):
        self.release = threading.Event()
        self.inside = threading.Event()       # a write() is waiting
        self.came_out = threading.Event()     # a write() stopped waiting
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.inside.set()
        try:
            assert self.release.wait(timeout=30)
        finally:
            self.came_out.set()
        self.lines += text.splitlines()
        return len(text)

    def flush(self) -> None:
        pass


def test_writer_never_blocks_on_a_slow_stream():
    stream = BlockedStream()
    w = TerminalWriter(stream, SimpleRenderer(), max_queued_lines=100)
    w.emit(rec(pid=0))
    assert stream.inside.wait(timeout=30)         # the stream is blocked from here on
    for i in range(1, 5000):
        w.emit(rec(pid=i))
    # every emit returned while the stream was still blocked: none waited on it
    # (a blocking emit could only have got past the blocked write by its timeout)
    assert not stream.came_out.is_set()
    s = w.statistics()
    assert s.requests == 5000 and s.queued <= 100
    assert s.dropped_lines >= 5000 - 100 - WRITE_BATCH_LINES
    stream.release.set()
    w.close(timeout_s=10)
    s = w.statistics()
    assert s.written_lines == len(stream.lines)
    assert s.written_lines + s.dropped_lines == 5000
    w.emit(rec())                                 # after close: counted, not written
    assert w.statistics().dropped_lines == s.dropped_lines + 1


class BrokenPipe:
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        pass


def test_writer_survives_a_broken_pipe():
    w = TerminalWriter(BrokenPipe(), JsonRenderer())
    for _ in range(20):
        w.emit(rec())
    w.close()
    s = w.statistics()
    assert s.dropped_lines == 20 and s.written_lines == 0
    assert "BrokenPipeError" in s.write_error


def test_on_a_tty_the_status_line_is_rewritten_in_place():
    out = Writes()
    w = TerminalWriter(out, TableRenderer(width=80), status_every_s=5.0, in_place=True)
    stats = SimpleNamespace(ledger=Ledger.of({}))
    w.tick(stats, 0)
    for n, t in enumerate((5, 10, 15), 1):        # idle: the same line, three times
        w.tick(stats, t * 10**9)
        out.wait_for(n)
    w.emit(rec())                                 # a row goes above the status line
    w.tick(stats, 20 * 10**9)
    w.close()
    text = "".join(out.texts)
    idle = status_line(StatusSnapshot(0.0, 0, 0, {}), 80)
    assert out.texts[:3] == [idle + "\r", "\r\x1b[K" + idle + "\r", "\r\x1b[K" + idle + "\r"]
    lines = [on_screen(line) for line in text.split("\n")]
    assert lines[:2] == [TableRenderer(width=80).header(), TableRenderer(width=80).row(rec())]
    assert lines[2].startswith("-- 0.2 req/s  1 requests") and lines[3:] == [""]
    assert w.statistics().written_lines == 3 + 3


class Writes(io.StringIO):
    """Each write() apart, and a way to wait for the writer thread's n-th."""

    def __init__(self):
        super().__init__()
        self.texts: list[str] = []
        self.cond = threading.Condition()

    def write(self, text: str) -> int:
        with self.cond:
            self.texts.append(text)
            self.cond.notify_all()
        return len(text)

    def wait_for(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.texts) >= n, timeout=30)


def on_screen(line: str) -> str:
    """What a terminal shows of one line: \r goes back, ESC [K erases the rest."""
    shown = ""
    for part in line.split("\r"):
        if part.startswith("\x1b[K"):
            shown, part = "", part[3:]
        shown = part + shown[len(part):]
    return shown
