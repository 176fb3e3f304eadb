"""The ledger: every place that drops or fails to read something, by name (pure).

One `Loss` member per drop or error point; adding a point costs one member
here (and its counter where it happens).  Each member says its `label` (the
`source` label value, the key in the stop summaries, the name on the wire),
its `family` (which metric, summary key and status-line word it goes under)
and its `stage` (who counts it).  A `Ledger` is one frozen snapshot of every
member's running total, 0 included; the aggregator builds one per tick and
the metrics, the status line, `/health?detail` and the stop summary all read
it (aggregator/ledger.py).

On the wire (docs/protocol.md, HEARTBEAT) a collector reports its members'
totals by label: the LOST family in `lost`, the others in `stats`.  A `lost`
name this side does not know (a newer collector) is kept under
`collector_other`, never dropped.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping


class Family(enum.Enum):
    """(metric family name, help, stop-summary key, status-line word)."""
    LOST = ("s3slower_events_lost", "Events lost, by where", "lost", "loss")
    ERRORS = ("s3slower_tracer_errors",
              "Errors of the tracer itself (not S3 errors), by where",
              "tracer_errors", "tracer errors")
    SKIPPED = ("s3slower_skipped_bytes",
               "Traced bytes that belonged to no message seen, by where",
               "skipped_bytes", "skipped bytes")

    def __init__(self, metric: str, help_text: str, summary_key: str, word: str):
        self.metric = metric
        self.help_text = help_text
        self.summary_key = summary_key
        self.word = word


class Stage(enum.Enum):
    KERNEL = "kernel"            # the BPF program's `lost` array
    COLLECTOR = "collector"      # the collector process
    AGGREGATOR = "aggregator"    # subscriber, pipeline, parser, stitcher
    OUTPUT = "output"            # terminal, log file, OTLP exporter

    @property
    def reported(self) -> bool:
        """Counted on the collector's host and carried by its heartbeats."""
        return self in (Stage.KERNEL, Stage.COLLECTOR)


_L, _E, _S = Family.LOST, Family.ERRORS, Family.SKIPPED
_K, _C, _A, _O = Stage.KERNEL, Stage.COLLECTOR, Stage.AGGREGATOR, Stage.OUTPUT


class Loss(enum.Enum):
    # label, family, stage, what was dropped or failed
    RINGBUF = ("ringbuf", _L, _K, "kernel ring buffer full: record dropped")
    TLS_NO_SOCKET = ("tls_no_socket", _L, _K, "TLS plaintext with no known socket")
    THREAD_STATE = ("thread_state", _L, _K, "no per-thread storage for a call")
    COLLECTOR_OUTBOX = ("collector_outbox", _L, _C,
                        "events of messages the full collector outbox refused")
    FAILOVER = ("failover", _L, _C,
                "events handed to an aggregator in its last 3 s before its connection "
                "dropped (possibly lost, an upper bound: collector/links.py)")
    COLLECTOR_OTHER = ("collector_other", _L, _C,
                       "losses a collector reported under a name not known here")
    ATTACH = ("attach_errors", _E, _C, "uprobes the kernel refused to attach")
    DETACH = ("detach_errors", _E, _C, "uprobes that failed to detach")
    ELF_PARSE = ("elf_parse_errors", _E, _C, "files that looked like ELF but did not parse")
    COLLECTORS_REFUSED = ("collectors_refused", _L, _A,
                          "collector connections refused (unknown CurveZMQ key)")
    TRANSPORT = ("transport", _L, _A, "messages missing from a collector's sequence")
    MALFORMED = ("malformed", _L, _A, "frames or records that do not decode")
    COLLECTOR_EVICTED = ("collector_evicted", _L, _A,
                         "collector states forgotten over MAX_COLLECTORS")
    PROCESS_EVICTED = ("process_evicted", _L, _A,
                       "process announcements forgotten over MAX_PROCESSES")
    ADDRESS_EVICTED = ("address_evicted", _L, _A,
                       "connect() addresses forgotten over MAX_ADDRESSES")
    CONN_EVICTED = ("conn_evicted", _L, _A, "connections evicted over MAX_CONNECTIONS")
    OPAQUE_EVICTED = ("opaque_evicted", _L, _A,
                      "opaque TLS connections forgotten over MAX_OPAQUE (a line lost)")
    MULTIPART_EVICTED = ("multipart_evicted", _L, _A,
                         "open multipart uploads forgotten over MAX_OPEN (a line lost)")
    RETRY_EVICTED = ("retry_evicted", _L, _A,
                     "failed requests forgotten over MAX_FAILED before their retry "
                     "(that retry then taken as a first attempt)")
    STREAM_GAP = ("stream_gap", _L, _A, "messages or parts of them lost to framing loss")
    UNANSWERED = ("unanswered", _L, _A, "responses to requests never seen, dropped")
    HTTP_INVALID = ("http_invalid", _E, _A, "malformed heads, lengths and chunk lines")
    SUPERSEDED = ("superseded", _E, _A,
                  "requests a newer request showed were over (recorded incomplete)")
    STREAM_SKIPPED = ("stream", _S, _A, "bytes that belonged to no message seen")
    TERMINAL = ("terminal", _L, _O, "terminal lines dropped (queue full or stdout gone)")
    LOG_QUEUE = ("log_queue", _L, _O, "log records dropped: the log queue was full")
    LOG_WRITE = ("log_write", _L, _O, "log records whose write failed")
    OTLP = ("otlp", _L, _O,
            "request spans not delivered over OTLP (queue full, export failed, unsent at stop)")

    def __init__(self, label: str, family: Family, stage: Stage, doc: str):
        self.label = label
        self.family = family
        self.stage = stage
        self.doc = doc


_BY_LABEL = {m.label: m for m in Loss}
REPORTED = tuple(m for m in Loss if m.stage.reported)


@dataclass(frozen=True)
class Ledger:
    """Every member's running total at one moment (0 for the ones not counted)."""
    counts: Mapping[Loss, int]

    @classmethod
    def of(cls, *parts: Mapping[Loss, int]) -> "Ledger":
        """The sum of `parts`, each a partial map of members to totals."""
        counts = dict.fromkeys(Loss, 0)
        for part in parts:
            for m, n in part.items():
                counts[m] += n
        return cls(counts)

    def family(self, family: Family) -> dict[str, int]:
        """label -> total for one family, in the enum's order."""
        return {m.label: self.counts[m] for m in Loss if m.family is family}

    def summary(self) -> dict[str, dict[str, int]]:
        """The stop summary's maps: {"lost": {...}, "tracer_errors": {...}, ...}."""
        return summary(self.counts)


def summary(counts: Mapping[Loss, int]) -> dict[str, dict[str, int]]:
    """Family summary key -> {label: total} of the members in `counts`, in enum order."""
    return {f.summary_key: {m.label: counts[m] for m in Loss if m.family is f and m in counts}
            for f in Family}


def heartbeat_maps(counts: Mapping[Loss, int]) -> tuple[dict[str, int], dict[str, int]]:
    """A collector's totals as its heartbeat carries them: (lost, more stats)."""
    lost = {m.label: n for m, n in counts.items() if m.family is Family.LOST}
    rest = {m.label: n for m, n in counts.items() if m.family is not Family.LOST}
    return lost, rest


def from_heartbeat(lost: Mapping[str, int], stats: Mapping[str, int]) -> dict[Loss, int]:
    """The reported members' totals one heartbeat carries (the inverse of
    heartbeat_maps); unknown `lost` names are summed in COLLECTOR_OTHER."""
    out = {m: (lost if m.family is Family.LOST else stats).get(m.label, 0) for m in REPORTED}
    out[Loss.COLLECTOR_OTHER] += sum(n for name, n in lost.items()
                                     if _BY_LABEL.get(name) not in REPORTED)
    return out
