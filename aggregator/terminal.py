"""The live terminal view: table, simple and json renderers, and a writer that never blocks.

Renderers are pure (records in, strings out, no clock, no I/O).  The table:

    TIME         PID COMM     OP          BUCKET    KEY          STATUS BYTES LAT ms

fits `width` columns exactly (80 by default).  KEY takes what the fixed columns
leave, up to `max_url_length`; wider terminals then widen BUCKET, OP and COMM.
Text is cut to its column by display width (wide characters count two); KEY
keeps its end (the file name) behind a `~`, other columns their start.  Control
and format characters in captured text are shown as `?`, so a key can never
drive the terminal.  STATUS is `-` when no response was seen and `NNN*` when
the response never finished.  Colour (ANSI) only when the caller says so (see
`use_color`): errors red, slow requests (>= `slow_ms`) yellow.  The header is
repeated every `header_every` rows; the status line shows requests/s, totals,
errors and loss by source — `loss 0` when there is none (STYLE habit 3) — then
the tick's ledger's other families (tracer errors, skipped bytes) when not 0.
On a TTY (`in_place`) the status line stays the last line, rewritten there.

`TerminalWriter` takes records on the tracing thread and hands them to a
daemon thread through a bounded queue (`queuewriter.QueueWriter`); a slow or
blocked stdout drops lines (counted in `statistics().dropped_lines`), never
the tracer.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import unicodedata
from dataclasses import dataclass
from typing import Mapping, Optional, Protocol, TextIO

from s3slower.aggregator.queuewriter import QueueWriter
from s3slower.aggregator.records import Record, to_json
from s3slower.common.losses import Family, Ledger

# A human reads a few dozen rows a second; 4096 queued lines is already
# seconds behind, and at ~1 KB per queued record a bounded 4 MB.  Later rows
# are dropped and counted rather than shown late.
TERMINAL_QUEUE_LINES = 4096
WRITE_BATCH_LINES = 512         # lines joined into one write() and flush()
HEADER_EVERY_ROWS = 20          # a header stays on a 24-line screen
DEFAULT_SLOW_MS = 1000.0
DEFAULT_STATUS_EVERY_S = 5.0    # the Go tool's collection interval
KEY_MIN_WIDTH = 4
CUT = "~"                       # ASCII: ambiguous-width "…" breaks alignment in CJK locales
RED, YELLOW, BOLD, RESET = "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
ERASE_LINE = "\r\x1b[K"

# (name, width at 80 columns, widest it grows to, right-aligned); KEY is elastic
COLUMNS = (("TIME", 8, 8, False), ("PID", 7, 7, True), ("COMM", 8, 15, False),
           ("OP", 11, 23, False), ("BUCKET", 9, 30, False), ("KEY", 0, 0, False),
           ("STATUS", 6, 6, True), ("BYTES", 5, 5, True), ("LAT ms", 6, 6, True))
GROW_ORDER = ("BUCKET", "OP", "COMM")
OP_SHORTHANDS = (("MultipartUpload", "MPU"), ("Objects", "Objs"), ("Object", "Obj"),
                 ("Bucket", "Bkt"), ("Upload", "Upl"))


def use_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colour only on a TTY, never with NO_COLOR set (even empty) or TERM=dumb."""
    return "NO_COLOR" not in environ and environ.get("TERM") != "dumb" and is_terminal(stream)


def is_terminal(stream: Optional[TextIO]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):              # a closed or odd stream
        return False


def terminal_width(stream: TextIO, environ: Mapping[str, str], default: int = 80) -> int:
    """$COLUMNS, else the terminal's width, else `default` (pipes, files)."""
    cols = environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return int(cols)
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return default


# -- text cells ----------------------------------------------------------------
def clean(text: str) -> str:
    return "".join("?" if unicodedata.category(ch)[0] == "C" else ch for ch in text)


def char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


def fit(text: str, width: int, *, right: bool = False, keep_end: bool = False) -> str:
    """`text` cut (with CUT) and padded to exactly `width` display columns."""
    text = clean(text)
    if display_width(text) > width:
        text = _cut(text, width, keep_end)
    pad = " " * (width - display_width(text))
    return pad + text if right else text + pad


def _cut(text: str, width: int, keep_end: bool) -> str:
    if width < len(CUT):
        return ""
    room, out = width - len(CUT), []
    for ch in (reversed(text) if keep_end else text):
        w = char_width(ch)
        if w > room:
            break
        room -= w
        out.append(ch)
    if keep_end:
        return CUT + "".join(reversed(out))
    return "".join(out) + CUT


def human_bytes(n: int) -> str:
    """At most 4 characters: 999, 1.5K, 999K, 12M, 1.0G ..."""
    if n < 1000:
        return str(max(0, n))
    v = float(n)
    for unit in "KMGTPE":
        v /= 1024
        if v < 9.95:
            return f"{v:.1f}{unit}"
        if v < 999.5:
            return f"{v:.0f}{unit}"
    return "huge"


def human_ms(ms: float) -> str:
    """At most 6 characters."""
    if ms < 9.995:
        return f"{ms:.2f}"
    if ms < 999.95:
        return f"{ms:.1f}"
    if ms < 999_999.5:
        return f"{ms:.0f}"
    return f"{ms / 1000:.0f}s"


def short_op(op: str, width: int) -> str:
    for long, short in OP_SHORTHANDS:
        if display_width(op) <= width:
            break
        op = op.replace(long, short)
    return op


def status_text(rec: Record) -> str:
    if rec.status_code <= 0:
        return "-"
    return f"{rec.status_code}" if rec.complete else f"{rec.status_code}*"


# -- renderers -------------------------------------------------------------------
@dataclass(frozen=True)
class StatusSnapshot:
    requests_per_s: float
    requests: int
    errors: int
    loss: Mapping[str, int]          # source -> total lost
    # the ledger's other families: (status word, source -> total)
    more: tuple[tuple[str, Mapping[str, int]], ...] = ()


class Renderer(Protocol):
    def render(self, rec: Record) -> list[str]: ...
    def status(self, snap: StatusSnapshot) -> list[str]: ...


def column_widths(width: int, max_url_length: int) -> dict[str, int]:
    widths = {name: w for name, w, _, _ in COLUMNS}
    fixed = sum(widths.values()) + len(COLUMNS) - 1
    key = max(KEY_MIN_WIDTH, width - fixed)
    widths["KEY"] = min(key, max(KEY_MIN_WIDTH, max_url_length))
    spare = key - widths["KEY"]
    grow = {name: most for name, _, most, _ in COLUMNS}
    for name in GROW_ORDER:
        extra = min(spare, grow[name] - widths[name])
        widths[name] += extra
        spare -= extra
    return widths


class TableRenderer:
    def __init__(self, *, width: int = 80, max_url_length: int = 50, color: bool = False,
                 header_every: int = HEADER_EVERY_ROWS, slow_ms: float = DEFAULT_SLOW_MS,
                 tz: Optional[_dt.tzinfo] = None):
        self.widths = column_widths(width, max_url_length)
        self.width = sum(self.widths.values()) + len(COLUMNS) - 1
        self.color = color
        self.header_every = max(1, header_every)
        self.slow_ms = slow_ms
        self.tz = tz                   # None: the local time zone
        self._rows = 0

    def header(self) -> str:
        line = " ".join(fit(name, self.widths[name], right=right)
                        for name, _, _, right in COLUMNS)
        return f"{BOLD}{line}{RESET}" if self.color else line

    def row(self, rec: Record) -> str:
        w = self.widths
        t = _dt.datetime.fromtimestamp(rec.start_wall_ns / 1e9, tz=self.tz)
        cells = {"TIME": t.strftime("%H:%M:%S"), "PID": str(rec.pid), "COMM": rec.comm,
                 "OP": short_op(rec.operation, w["OP"]), "BUCKET": rec.bucket,
                 "KEY": rec.key, "STATUS": status_text(rec),
                 "BYTES": human_bytes(rec.request_size + rec.response_size),
                 "LAT ms": human_ms(rec.latency_ms)}
        line = " ".join(fit(cells[name], w[name], right=right, keep_end=name == "KEY")
                        for name, _, _, right in COLUMNS)
        if self.color and rec.is_error:
            return f"{RED}{line}{RESET}"
        if self.color and rec.latency_ms >= self.slow_ms:
            return f"{YELLOW}{line}{RESET}"
        return line

    def render(self, rec: Record) -> list[str]:
        lines = [self.header()] if self._rows % self.header_every == 0 else []
        self._rows += 1
        return lines + [self.row(rec)]

    def status(self, snap: StatusSnapshot) -> list[str]:
        return [status_line(snap, self.width, self.color)]


def status_line(snap: StatusSnapshot, width: int, color: bool = False) -> str:
    parts = [("-- ", ""), (f"{snap.requests_per_s:.1f} req/s  ", ""),
             (f"{snap.requests} requests  ", ""),
             (f"{snap.errors} errors", RED if snap.errors else ""), ("  ", ""),
             _counts("loss", snap.loss)]
    for word, counts in snap.more:
        if any(counts.values()):
            parts += [("  ", ""), _counts(word, counts)]
    parts.append((" ", ""))
    out, room = [], width
    for text, code in parts:
        text = clean(text)
        if display_width(text) > room:
            text = _cut(text, room, False)
        room -= display_width(text)
        out.append(f"{code}{text}{RESET}" if color and code else text)
    return "".join(out) + "-" * room


def status_of(rate: float, requests: int, errors: int, ledger: Ledger) -> StatusSnapshot:
    """The status line's numbers: these counts and the tick's ledger."""
    more = tuple((f.word, ledger.family(f)) for f in Family if f is not Family.LOST)
    return StatusSnapshot(rate, requests, errors, ledger.family(Family.LOST), more)


def _counts(word: str, counts: Mapping[str, int]) -> tuple[str, str]:
    """`word total (source n, ...)`, largest first, and its colour."""
    total = sum(counts.values())
    detail = ", ".join(f"{src} {n}" for src, n in
                       sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n)
    return f"{word} {total}" + (f" ({detail})" if detail else ""), YELLOW if total else ""


class SimpleRenderer:
    """One plain line per request, key=value, never cut, never coloured."""

    def render(self, rec: Record) -> list[str]:
        d = rec.to_json_dict()
        fields = [("pid", d["pid"]), ("comm", d["comm"]), ("op", d["operation"]),
                  ("bucket", d["bucket"]), ("key", d["key"]),
                  ("endpoint", d["endpoint"]), ("status", d["status_code"]),
                  ("error", d["error_code"]), ("req_bytes", d["request_size"]),
                  ("resp_bytes", d["response_size"]), ("ttfb_ms", d["ttfb_ms"]),
                  ("latency_ms", d["latency_ms"]), ("complete", d["complete"]),
                  ("request_id", d["request_id"]), ("id2", d["extended_request_id"]),
                  ("region", d["region"])]
        return [d["timestamp"] + " " + " ".join(f"{k}={_value(v)}" for k, v in fields)]

    def status(self, snap: StatusSnapshot) -> list[str]:
        return []


def _value(v: object) -> str:
    s = clean(str(v)).lower() if isinstance(v, bool) else clean(str(v))
    if s == "" or any(ch in s for ch in ' ="'):
        return json.dumps(s, ensure_ascii=False)
    return s


class JsonRenderer:
    def render(self, rec: Record) -> list[str]:
        return [to_json(rec)]

    def status(self, snap: StatusSnapshot) -> list[str]:
        return []


def make_renderer(output: str, *, width: int = 80, max_url_length: int = 50,
                  color: bool = False) -> Renderer:
    if output == "table":
        return TableRenderer(width=width, max_url_length=max_url_length, color=color)
    if output == "simple":
        return SimpleRenderer()
    if output == "json":
        return JsonRenderer()
    raise ValueError(f"unknown output {output!r} (table, simple or json)")


# -- the writer ---------------------------------------------------------------------
@dataclass(frozen=True)
class TerminalStatistics:
    requests: int
    errors: int
    written_lines: int
    dropped_lines: int
    queued: int
    write_error: str                  # "" while the stream takes writes


class TerminalWriter:
    """The terminal Sink: emit() never blocks; a daemon thread writes."""

    def __init__(self, stream: TextIO, renderer: Renderer, *,
                 max_queued_lines: int = TERMINAL_QUEUE_LINES,
                 status_every_s: float = DEFAULT_STATUS_EVERY_S, in_place: bool = False):
        self.stream = stream
        self.renderer = renderer
        self.status_every_ns = int(status_every_s * 1e9)
        self.in_place, self._status_shown = in_place, ""   # in place: the status on screen
        self._requests = self._errors = 0
        self._dropped_io = self._written = 0  # counted by the writer thread
        self._write_error = ""
        self._last_status: Optional[tuple[int, int]] = None   # (now_ns, requests)
        self._writer = QueueWriter(self._write, name="s3slower-terminal",
                                   max_queued=max_queued_lines, batch=WRITE_BATCH_LINES,
                                   on_stop=self._end_status)

    def emit(self, rec: Record) -> None:
        self._requests += 1
        self._errors += rec.is_error
        self._put(rec)

    def tick(self, snap, now_wall_ns: int) -> None:  # snap: ledger.Snapshot
        if self._last_status is None:
            self._last_status = (now_wall_ns, self._requests)
            return
        then, count = self._last_status
        if now_wall_ns - then < self.status_every_ns:
            return
        self._last_status = (now_wall_ns, self._requests)
        rate = (self._requests - count) / ((now_wall_ns - then) / 1e9)
        self._put(status_of(rate, self._requests, self._errors, snap.ledger))

    def _put(self, item: object) -> None:
        self._writer.put(item)

    def _write(self, items: list) -> None:
        if self._write_error:                   # the stream is gone: count, move on
            self._dropped_io += len(items)
            return
        lines, status = [], []                  # status, in place: the newest status line
        for item in items:
            if not isinstance(item, StatusSnapshot):
                lines += self.renderer.render(item)
            elif self.in_place:
                status = self.renderer.status(item)[-1:] or status
            else:
                lines += self.renderer.status(item)
        if lines or status:
            text = self._in_place(lines, status) if self.in_place else "\n".join(lines) + "\n"
            self._written += (len(lines) + len(status)) * self._put_text(text, len(items))

    def _in_place(self, lines: list[str], status: list[str]) -> str:
        """Status erased, rows, status, cursor at its start (stderr overwrites it)."""
        text = ERASE_LINE if self._status_shown else ""
        text += "".join(line + "\n" for line in lines)
        self._status_shown = status[-1] if status else self._status_shown
        return text + self._status_shown + "\r"

    def _end_status(self) -> None:            # at close: below the status line
        if self._status_shown and not self._write_error:
            self._put_text("\n", 0)

    def _put_text(self, text: str, items: int) -> bool:
        try:
            self.stream.write(text)
            self.stream.flush()
            return True
        except (OSError, ValueError) as e:      # EPIPE, EIO, a closed stream
            self._write_error = f"{type(e).__name__}: {e}"
            self._dropped_io += items
            return False

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (waiting at most timeout_s for a slow stream)."""
        self._writer.close(timeout_s)

    def statistics(self) -> TerminalStatistics:
        return TerminalStatistics(self._requests, self._errors, self._written,
                                  self._writer.dropped + self._dropped_io, self._writer.queued,
                                  self._write_error)
