"""The `--output top` screen as lines: pure (rows in, exactly `height` lines out).

    s3slower top  3 bucket/op rows  sort req/s  rates and latency over the last 10s
    BUCKET         OPERATION       REQS  *REQ/s  P50 ms  P99 ms   ERR   THR  BYTES/s
    photos         GetObject         80     8.0    1.52    9.80     2     0     1.2M
    ...                                                       (blank up to the keys)
    keys: q quit  g grouping  s sort  r reverse
    -- 12.0 req/s  120 requests  2 errors  loss 0 ---------------------------------

Line 1 is always the title, line 2 the column header (the sorted column
marked `*`), the last two lines the keys and the ledger's status line
(terminal.status_line, the table's own); rows fill what is between, and
"+N more" says what did not fit.  Every line is exactly `width` columns (80
by default; the key columns take what a wider terminal adds), so a frame
overwrites the last one without clearing and never scrolls.  REQS, ERR and
THR count since start; REQ/s, latency and BYTES/s cover the last `span_s`
seconds (aggregator/topmodel.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from s3slower.aggregator.terminal import (BOLD, RESET, StatusSnapshot, fit, human_bytes,
                                          human_ms, status_line)
from s3slower.aggregator.topmodel import Grouping, Row, Sort

# (header, width, the Sort it shows); all right-aligned
NUMBERS = (("REQS", 6, Sort.REQUESTS), ("REQ/s", 7, Sort.RATE), ("P50 ms", 7, Sort.P50),
           ("P99 ms", 7, Sort.P99), ("ERR", 5, Sort.ERRORS), ("THR", 5, Sort.THROTTLES),
           ("BYTES/s", 8, Sort.BYTES))
FIXED_KEY_WIDTHS = {"PID": 7, "COMM": 15}
MIN_WIDTH = 64                  # narrower terminals get the 64-column frame cut
MARK = "*"
HELP = "keys: q quit  g grouping  s sort  r reverse"
NO_KEYS = "keys: none (stdin is not a terminal), Ctrl-C quits"


@dataclass(frozen=True)
class View:
    """What the keys choose."""
    grouping: Grouping = Grouping.BUCKET_OP
    sort: Sort = Sort.RATE
    reverse: bool = False


def key_widths(grouping: Grouping, width: int) -> list[int]:
    """The key columns' widths: what the numbers leave, PID and COMM fixed."""
    room = width - sum(w for _, w, _ in NUMBERS) - len(NUMBERS) - (len(grouping.columns) - 1)
    fixed = [FIXED_KEY_WIDTHS.get(c) for c in grouping.columns]
    elastic = fixed.count(None)
    left = room - sum(w for w in fixed if w)
    share = [left // elastic + (i < left % elastic) for i in range(elastic)]
    return [w if w else share.pop(0) for w in fixed]


def human_count(n: int, width: int) -> str:
    """n in at most `width` characters: 1234567 in 5 is 1235K, in 4 1M."""
    for unit, size in (("", 1), ("K", 10**3), ("M", 10**6), ("G", 10**9), ("T", 10**12)):
        text = f"{n // size}{unit}"
        if len(text) <= width:
            return text
    return "huge"


def _rate(r: float) -> str:
    return f"{r:.1f}" if r < 9999.95 else f"{r:.0f}"


def _ms(ms: Optional[float]) -> str:
    return "-" if ms is None else human_ms(ms)


def cells(row: Row) -> list[str]:
    return [human_count(row.requests, 6), _rate(row.rate), _ms(row.p50_ms), _ms(row.p99_ms),
            human_count(row.errors, 5), human_count(row.throttles, 5),
            human_bytes(int(row.bytes_per_s))]


def header_line(view: View, width: int) -> str:
    keys = key_widths(view.grouping, width)
    names = list(view.grouping.columns)
    if view.sort is Sort.NAME:
        names[0] = MARK + names[0]
    parts = [fit(n, w) for n, w in zip(names, keys)]
    parts += [fit((MARK if s is view.sort else "") + n, w, right=True) for n, w, s in NUMBERS]
    return " ".join(parts)


def row_line(row: Row, grouping: Grouping, width: int) -> str:
    keys = key_widths(grouping, width)
    names = row.key + ("",) * (len(keys) - len(row.key))      # "other" has one part
    parts = [fit(n, w) for n, w in zip(names, keys)]
    parts += [fit(c, w, right=True) for c, (_, w, _) in zip(cells(row), NUMBERS)]
    return " ".join(parts)


def title_line(view: View, groups: int, span_s: int, width: int) -> str:
    order = ", reversed" if view.reverse else ""
    return fit(f"s3slower top  {groups} {view.grouping.word} rows  sort {view.sort.word}{order}  "
               f"rates and latency over the last {span_s}s", width)


def screen(rows: list[Row], view: View, span_s: int, status: StatusSnapshot,
           *, width: int = 80, height: int = 24, color: bool = False,
           keys: bool = True) -> list[str]:
    """Exactly `height` lines (title and header first, keys and status last)."""
    if width < MIN_WIDTH:
        return [fit(line, width) for line in screen(rows, view, span_s, status,
                                                   width=MIN_WIDTH, height=height,
                                                   keys=keys)]
    header = header_line(view, width)
    top = [title_line(view, len(rows), span_s, width),
           f"{BOLD}{header}{RESET}" if color else header]
    bottom = [fit(HELP if keys else NO_KEYS, width), status_line(status, width, color)]
    if height < len(top) + len(bottom):          # the status line goes last
        return (top + bottom)[len(top) + len(bottom) - max(0, height):] \
            if height < len(bottom) else top[:height - len(bottom)] + bottom
    room = height - len(top) - len(bottom)
    shown = rows if len(rows) <= room else rows[:max(0, room - 1)]
    body = [row_line(r, view.grouping, width) for r in shown]
    if len(shown) < len(rows) and room:
        body.append(fit(f"+{len(rows) - len(shown)} more", width))
    body += [" " * width] * (room - len(body))
    return top + body + bottom
