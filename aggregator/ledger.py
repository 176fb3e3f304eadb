"""One snapshot per tick of every loss and error (common/losses.py), read by every output.

`Book.snapshot(pipeline_stats)` sums the pipeline's counts (which carry the
collectors' heartbeat totals) and every other counting stage's (`sources`:
terminal, log file, subscriber) into one frozen `Ledger`.  The metrics
(`LedgerCollector`, at scrape time: the totals are exported as they are,
never diffed into counters), the terminal's status line, `/health?detail`
and the stop summary all read that one snapshot, so they always agree.

Members counted where no reason is at hand (the collectors' reports, the
outputs' drops) get their reason here: under `--debug`, when a total grows,
one rate-limited line (s3slower/reasons.py) says by how much and what it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily

from s3slower.aggregator.pipeline import PipelineStats
from s3slower.common.losses import Family, Ledger, Loss, Stage
from s3slower.reasons import note

# Counted where they happen, each with its reason there (pipeline.py).
_NOTED_AT_SOURCE = frozenset(m for m in Loss if m.stage is Stage.AGGREGATOR) - {
    Loss.COLLECTORS_REFUSED}


@dataclass(frozen=True)
class Snapshot:
    """What every sink's tick gets: the pipeline's statistics and the ledger."""
    pipeline: PipelineStats
    ledger: Ledger


EMPTY = Snapshot(PipelineStats(0, 0, 0, 0, 0, 0, {}, ()), Ledger.of())


class Book:
    """Builds the tick's Snapshot; `sources` return more members' totals."""

    def __init__(self, sources: Iterable[Callable[[], Mapping[Loss, int]]] = ()):
        self.sources = list(sources)
        self.last = EMPTY

    def snapshot(self, stats: PipelineStats) -> Snapshot:
        ledger = Ledger.of(stats.losses, *(source() for source in self.sources))
        before = self.last.ledger.counts
        for m, n in ledger.counts.items():
            if n > before[m] and m not in _NOTED_AT_SOURCE:
                note(m, f"{m.doc} (total {n})", n - before[m])
        self.last = Snapshot(stats, ledger)
        return self.last


class LedgerCollector:
    """prometheus_client custom collector: one counter family per ledger Family,
    `source` label, every member exported (0 included) from the latest snapshot."""

    def __init__(self, current: Callable[[], Ledger]):
        self.current = current

    def describe(self) -> list[CounterMetricFamily]:
        return [_family(f) for f in Family]

    def collect(self) -> Iterator[CounterMetricFamily]:
        ledger = self.current()
        for f in Family:
            fam = _family(f)
            for label, n in ledger.family(f).items():
                fam.add_metric((label,), n)
            yield fam


def _family(f: Family) -> CounterMetricFamily:
    return CounterMetricFamily(f.metric, f.help_text, labels=("source",))


def health_detail(snap: Snapshot) -> dict:
    """The `/health?detail` document: the ledger and each collector's last stats."""
    p = snap.pipeline
    return {"status": "ok", "messages": p.messages, "events": p.events,
            "records": p.records, "errors": p.errors, **snap.ledger.summary(),
            "collectors": {c.hostname: {"last_heartbeat_s": c.last_heartbeat_wall_ns / 1e9,
                                        "said_bye": c.said_bye, "stats": dict(c.stats)}
                           for c in p.collectors}}


def stop_summary(snap: Snapshot) -> dict:
    """The aggregator's stop summary line (launch.summary)."""
    p = snap.pipeline
    return {"messages": p.messages, "events": p.events, "records": p.records,
            "errors": p.errors, **snap.ledger.summary()}
