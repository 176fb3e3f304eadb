"""What `--output top` shows, without a terminal: requests folded into groups (pure).

One `TopModel` keeps every grouping at once (bucket and operation, client,
endpoint, process), so a key press switches the view without losing what
came before.  `add(rec, now_ns)` counts a request at the time it arrived;
`rows(grouping, sort, now_ns)` returns the view's rows, sorted, with the
"other" row (groups over the cap) last.

Invariants
* Since start: REQS, ERR and THR are totals, never windowed.
* Over the window (the last `window_s` seconds, the current one counted as a
  whole second, fewer right after start: `span_s`): req/s, bytes/s and the
  latency quantiles.  Each group keeps one slot per second of the window,
  each slot a log-scale latency histogram (BUCKETS_PER_DOUBLING buckets per
  doubling, at most MAX_BUCKET + 1) and its exact min and max, so p50/p99
  are within ~4.5% of the true value and exact when the latencies agree.
* At most `max_groups` groups per grouping; a new one then takes the place
  of the least recently seen if that one was idle for the whole window
  (whose numbers fold into "other"), else it is counted in "other" itself.
"""
from __future__ import annotations

import enum
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from s3slower.aggregator.records import Record
from s3slower.aggregator.retries import is_throttle

# 10 s: a p99 of a few requests a second still rests on dozens of samples,
# and a change in latency shows within seconds.
WINDOW_S = 10
# A 24-line screen shows 19 rows; 50 rows of 4 groupings keep the model at a
# few MB even when every slot holds a spread of latencies.
MAX_GROUPS = 50
# 8 buckets per doubling: a bucket spans 9%, its middle is within 4.5%.
BUCKETS_PER_DOUBLING = 8
MAX_BUCKET = 45 * BUCKETS_PER_DOUBLING   # 2^45 ns ~ 9.8 hours: longer is "at least that"
OTHER = ("other",)


class Grouping(enum.Enum):
    """(what the help line calls it, the row key's column names)."""
    BUCKET_OP = ("bucket/op", ("BUCKET", "OPERATION"))
    CLIENT = ("client", ("CLIENT",))
    ENDPOINT = ("endpoint", ("ENDPOINT",))
    PROCESS = ("process", ("PID", "COMM", "HOST"))

    def __init__(self, word: str, columns: tuple[str, ...]):
        self.word = word
        self.columns = columns


def _client(rec: Record) -> str:
    """The record's `client` (from its User-Agent) when one was recognised, else its comm."""
    client = getattr(rec, "client", "")
    return rec.comm if client in ("", "other") else client


KEYS: dict[Grouping, Callable[[Record], tuple[str, ...]]] = {
    Grouping.BUCKET_OP: lambda r: (r.bucket or "-", r.operation),
    Grouping.CLIENT: lambda r: (_client(r),),
    Grouping.ENDPOINT: lambda r: (r.endpoint or "-",),
    Grouping.PROCESS: lambda r: (str(r.pid), r.comm, r.hostname),
}


class Sort(enum.Enum):
    """(help line word, Row attribute); numbers sort largest first."""
    RATE = ("req/s", "rate")
    P99 = ("p99", "p99_ms")
    P50 = ("p50", "p50_ms")
    ERRORS = ("errors", "errors")
    THROTTLES = ("throttles", "throttles")
    BYTES = ("bytes/s", "bytes_per_s")
    REQUESTS = ("requests", "requests")
    NAME = ("name", "key")

    def __init__(self, word: str, attr: str):
        self.word = word
        self.attr = attr


def bucket_of(latency_ns: int) -> int:
    return min(MAX_BUCKET, int(math.log2(max(1, latency_ns)) * BUCKETS_PER_DOUBLING))


def bucket_value(bucket: int) -> float:
    """The middle (geometric) of a bucket, in ns."""
    return 2 ** ((bucket + 0.5) / BUCKETS_PER_DOUBLING)


@dataclass
class Slot:
    """One second of one group."""
    second: int
    requests: int = 0
    bytes: int = 0
    lat_min: int = 0
    lat_max: int = 0
    hist: dict[int, int] = field(default_factory=dict)

    def add(self, latency_ns: int, nbytes: int) -> None:
        self.lat_min = latency_ns if not self.requests else min(self.lat_min, latency_ns)
        self.lat_max = max(self.lat_max, latency_ns)
        self.requests += 1
        self.bytes += nbytes
        b = bucket_of(latency_ns)
        self.hist[b] = self.hist.get(b, 0) + 1

    def merge(self, other: "Slot") -> None:
        if other.requests:
            self.lat_min = other.lat_min if not self.requests else min(self.lat_min,
                                                                       other.lat_min)
            self.lat_max = max(self.lat_max, other.lat_max)
        self.requests += other.requests
        self.bytes += other.bytes
        for b, n in other.hist.items():
            self.hist[b] = self.hist.get(b, 0) + n


def quantile_ns(slot: Slot, q: float) -> Optional[float]:
    """Nearest-rank quantile of a (merged) slot; None when it is empty."""
    if not slot.requests:
        return None
    rank, seen = max(1, math.ceil(q * slot.requests)), 0
    for b in sorted(slot.hist):
        seen += slot.hist[b]
        if seen >= rank:
            return min(max(bucket_value(b), slot.lat_min), slot.lat_max)
    return float(slot.lat_max)


@dataclass
class Group:
    requests: int = 0
    errors: int = 0
    throttles: int = 0
    last_second: int = 0
    slots: deque = field(default_factory=deque)     # Slot, oldest first, within the window

    def add(self, rec: Record, second: int, window_s: int) -> None:
        self.requests += 1
        self.errors += rec.is_error
        self.throttles += is_throttle(rec)
        self.last_second = max(self.last_second, second)
        if not self.slots or self.slots[-1].second < second:
            self.slots.append(Slot(second))
        self.slots[-1].add(rec.latency_ns, rec.request_size + rec.response_size)
        while self.slots[0].second <= second - window_s:
            self.slots.popleft()

    def fold(self, other: "Group", window_s: int) -> None:
        """Take `other`'s numbers (a group evicted into "other")."""
        self.requests += other.requests
        self.errors += other.errors
        self.throttles += other.throttles
        self.last_second = max(self.last_second, other.last_second)
        by_second = {s.second: s for s in self.slots}
        for s in other.slots:
            if s.second in by_second:
                by_second[s.second].merge(s)
            else:
                by_second[s.second] = s
        self.slots = deque(sorted((s for s in by_second.values()
                                   if s.second > self.last_second - window_s),
                                  key=lambda s: s.second))

    def window(self, now_s: int, span_s: int) -> Slot:
        merged = Slot(now_s)
        for s in self.slots:
            if now_s - span_s < s.second <= now_s:
                merged.merge(s)
        return merged


@dataclass(frozen=True)
class Row:
    key: tuple[str, ...]
    requests: int               # since start
    errors: int
    throttles: int
    rate: float                 # requests/s over the window
    bytes_per_s: float
    p50_ms: Optional[float]     # None: no request in the window
    p99_ms: Optional[float]
    other: bool = False


class TopModel:
    def __init__(self, started_ns: int, *, window_s: int = WINDOW_S,
                 max_groups: int = MAX_GROUPS):
        self.started_s = started_ns // 1_000_000_000
        self.window_s = window_s
        self.max_groups = max_groups
        self.groups = {g: OrderedDict() for g in Grouping}   # key -> Group, LRU first
        self.other = {g: Group() for g in Grouping}
        self.total = Group()

    def add(self, rec: Record, now_ns: int) -> None:
        second = now_ns // 1_000_000_000
        self.total.add(rec, second, self.window_s)
        for grouping, groups in self.groups.items():
            self._group(grouping, groups, KEYS[grouping](rec), second).add(
                rec, second, self.window_s)

    def _group(self, grouping: Grouping, groups: OrderedDict, key: tuple[str, ...],
               second: int) -> Group:
        g = groups.get(key)
        if g is not None:
            groups.move_to_end(key)
            return g
        if len(groups) >= self.max_groups:
            oldest_key, oldest = next(iter(groups.items()))
            if oldest.last_second > second - self.window_s:
                return self.other[grouping]       # everyone is busy: count it as other
            self.other[grouping].fold(groups.pop(oldest_key), self.window_s)
        g = groups[key] = Group()
        return g

    def span_s(self, now_ns: int) -> int:
        """The seconds the rates are over: the window, or less right after start."""
        return max(1, min(self.window_s, now_ns // 1_000_000_000 - self.started_s + 1))

    def row(self, key: tuple[str, ...], g: Group, now_ns: int, other: bool = False) -> Row:
        span = self.span_s(now_ns)
        w = g.window(now_ns // 1_000_000_000, span)
        p50, p99 = quantile_ns(w, 0.5), quantile_ns(w, 0.99)
        return Row(key, g.requests, g.errors, g.throttles, w.requests / span, w.bytes / span,
                   None if p50 is None else p50 / 1e6, None if p99 is None else p99 / 1e6,
                   other)

    def rows(self, grouping: Grouping, sort: Sort, now_ns: int,
             reverse: bool = False) -> list[Row]:
        """Every group's row, sorted (numbers largest first, names A to Z;
        `reverse` turns that round), then "other" when it counted anything."""
        rows = [self.row(k, g, now_ns) for k, g in self.groups[grouping].items()]
        first = sort is not Sort.NAME
        rows.sort(key=lambda r: r.key)
        rows.sort(key=lambda r: _sort_value(getattr(r, sort.attr)), reverse=first != reverse)
        if self.other[grouping].requests:
            rows.append(self.row(OTHER, self.other[grouping], now_ns, other=True))
        return rows

    def total_row(self, now_ns: int) -> Row:
        return self.row(("total",), self.total, now_ns)


def _sort_value(v):
    return -1.0 if v is None else v
