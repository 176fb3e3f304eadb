"""Golden captures: load a case, run it through the whole aggregator pipeline,
and derive its split / mid-stream / truncated variants.  Pure: time is data.

A case is one of
  * `cases/NAME.json` — hand-made, reviewable: a list of kernel events, one per
    line, then the expected records, one per line (format below);
  * `real/NAME.rec` + `real/NAME.json` — a real recording written by the
    collector (`collector --record` code path, tests/golden/make_real.py) and
    its expected records.

Hand-made event lines, times in microseconds (the record's ms are then easy to
check by eye), bytes as latin-1 text (JSON escapes show \\r\\n and binary):
    ["c1", "connect", T, "127.0.0.1:9000"]
    ["c1", ">", T_ENTRY, T_RETURN, "bytes" | ["bytes", ...], {options}]   egress
    ["c1", "<", T_ENTRY, T_RETURN, "bytes" | ["bytes", ...], {options}]   ingress
    ["c1", "close", T]
  options: "length" (bytes the call moved, > len(bytes): the rest was not
  captured), "tail" (its last bytes), "tls" (openssl|gnutls|nss|go), "tid",
  "repeat": N with "step": microseconds (N such calls, each `step` later).
  In a list of bytes, {"fill": "x", "n": 4096} stands for "x" * 4096.

Every run ends with Pipeline.tick at a time far past every timeout, so requests
that never finished come out (complete=false).
"""
from __future__ import annotations

import dataclasses
import io
import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Optional

from s3slower.aggregator.pipeline import Pipeline
from s3slower.aggregator.records import Record
from s3slower.common import protocol, recording
from s3slower.common.events import Direction, Event, Kind, Source, decode_event, encode_event
from s3slower.common.protocol import Message, MsgKind

DIR = Path(__file__).resolve().parent
WALL_OFFSET = 1_700_000_000 * 10**9
HOST, PID, COMM = "golden", 4242, "client"
FAR_FUTURE = 10**20
BATCH = 1
_SOURCES = {s.tls_name: int(s) for s in Source}
IDENTITY = ("timestamp", "hostname", "pid", "tid", "comm", "method", "operation", "bucket",
            "key", "endpoint", "path", "tls", "labels")


@dataclass
class Case:
    name: str
    about: str
    events: list[Event]                   # kernel records, in time order
    expected: list[dict]
    expected_gaps: int = 0
    processes: list[dict] = field(default_factory=list)
    hostname: str = HOST
    instance: int = 1
    wall_offset_ns: int = WALL_OFFSET
    path_style_hosts: frozenset[str] = frozenset()
    source: Optional[Path] = None


# -- loading -------------------------------------------------------------------

def _sockaddr(addr: str) -> bytes:
    host, _, port = addr.rpartition(":")
    return (b"\x02\x00" + int(port).to_bytes(2, "big")
            + bytes(int(x) for x in host.split("."))).ljust(16, b"\0")


def _text(v) -> bytes:
    if isinstance(v, list):
        v = "".join(x["fill"] * x["n"] if isinstance(x, dict) else x for x in v)
    return v.encode("latin-1")


def parse_events(lines: list, pid: int = PID, comm: str = COMM) -> list[Event]:
    conns: dict[str, int] = {}
    out = []
    for line in lines:
        conn = conns.setdefault(line[0], 1000 + len(conns))
        kind = line[1]
        if kind in (">", "<"):
            t0, t1, data = line[2] * 1000, line[3] * 1000, _text(line[4])
            opts = line[5] if len(line) > 5 else {}
            length = opts.get("length", len(data))
            assert length >= len(data), line
            step = opts.get("step", 0) * 1000
            for k in range(opts.get("repeat", 1)):
                out.append(Event(t0 + k * step, t1 + k * step, conn, pid, opts.get("tid", pid),
                                 3, length, int(Kind.DATA),
                                 int(Direction.EGRESS if kind == ">" else Direction.INGRESS),
                                 _SOURCES[opts.get("tls", "none")], comm, data,
                                 _text(opts.get("tail", ""))))
        elif kind == "connect":
            out.append(Event(line[2] * 1000, line[2] * 1000, conn, pid, pid, 3, 16,
                             int(Kind.CONNECT), 0, 0, comm, _sockaddr(line[3]), b""))
        elif kind == "close":
            out.append(Event(line[2] * 1000, line[2] * 1000, conn, pid, pid, 3, 0,
                             int(Kind.CLOSE), 0, 0, comm, b"", b""))
        else:
            raise ValueError(f"unknown event line {line!r}")
    return out


def load_hand(path: Path) -> Case:
    doc = json.loads(path.read_text())
    return Case(path.stem, doc["about"], parse_events(doc["events"]), doc["expected"],
                doc.get("stream_gap", 0),
                path_style_hosts=frozenset(doc.get("path_style_hosts", ())), source=path)


def load_real(path: Path) -> Case:
    """A recording: its events and PROCESS announcements, in order."""
    doc = json.loads(path.with_suffix(".json").read_text())
    events, procs, first = [], [], None
    with open(path.with_suffix(".rec"), "rb") as f:
        for frame in recording.read_frames(f):
            msg = protocol.decode(frame)
            first = first or msg
            if msg.kind is MsgKind.EVENTS:
                events.extend(decode_event(raw) for raw in msg.body["events"])
            elif msg.kind is MsgKind.PROCESS:
                procs.append(msg.body)
    return Case(path.stem, doc["about"], events, doc["expected"], doc.get("stream_gap", 0),
                procs, first.hostname, first.instance, first.wall_offset_ns, source=path)


def all_cases() -> list[Case]:
    hand = [load_hand(p) for p in sorted((DIR / "cases").glob("*.json"))]
    real = [load_real(p) for p in sorted((DIR / "real").glob("*.rec"))]
    return hand + real


# -- running -------------------------------------------------------------------

@dataclass
class Run:
    records: list[dict]
    emitted_at: list[int]          # index of the event whose feeding emitted each record
    stream_gap: int
    pipeline: Pipeline
    lines: list[dict] = field(default_factory=list)   # of other kinds (multipart_upload)


def run(case: Case, events: Optional[list[Event]] = None, batch: int = BATCH) -> Run:
    """Feed events one batch at a time (each batch one EVENTS message)."""
    events = case.events if events is None else events
    p = Pipeline(path_style_hosts=case.path_style_hosts)
    seq = 0

    def msg(kind, body):
        nonlocal seq
        seq += 1
        return Message(kind, case.hostname, case.instance, seq - 1, case.wall_offset_ns, body)

    records, emitted_at, lines = [], [], []

    def take(out: list, at: int) -> None:
        recs = [r for r in out if type(r) is Record]
        records.extend(r.to_json_dict() for r in recs)
        emitted_at.extend([at] * len(recs))
        lines.extend(r.to_json_dict() for r in out if type(r) is not Record)

    for body in case.processes:
        p.handle(msg(MsgKind.PROCESS, body), 0)
    for i in range(0, len(events), batch):
        take(p.handle(msg(MsgKind.EVENTS, {"events": [encode_event(e) for e in
                                                      events[i:i + batch]]}), 0),
             min(i + batch, len(events)) - 1)
    take(p.tick(FAR_FUTURE), len(events))
    return Run(records, emitted_at, p.statistics().lost.get("stream_gap", 0), p, lines)


# -- variants -------------------------------------------------------------------

def split_event(ev: Event, cuts: Iterable[int]) -> list[Event]:
    """One call's visible bytes as several pieces, each with the call's stamps;
    the uncaptured remainder (and the tail) stays with the last piece."""
    if ev.kind != Kind.DATA or len(ev.data) < 2:
        return [ev]
    points = sorted({c for c in cuts if 0 < c < len(ev.data)})
    if not points:
        return [ev]
    bounds = [0, *points, len(ev.data)]
    pieces = []
    for a, b in zip(bounds, bounds[1:]):
        last = b == len(ev.data)
        pieces.append(replace(ev, data=ev.data[a:b],
                              length=(ev.length - a) if last else b - a,
                              tail=ev.tail if last else b""))
    return pieces


def byte_by_byte(events: list[Event]) -> list[Event]:
    return [p for ev in events for p in split_event(ev, range(1, len(ev.data)))]


def random_splits(events: list[Event], rng: random.Random) -> list[Event]:
    out = []
    for ev in events:
        n = rng.choice((0, 1, 2, 5))
        out += split_event(ev, [rng.randrange(1, max(2, len(ev.data))) for _ in range(n)])
    return out


def drop_prefix(ev: Event, n: int) -> Event:
    """The call with its first n visible bytes unseen."""
    return replace(ev, data=ev.data[n:], length=ev.length - n)


def cut_after(ev: Event, n: int) -> Event:
    """The call as if only its first n visible bytes had been moved."""
    return replace(ev, data=ev.data[:n], length=n, tail=b"")


def connections(events: list[Event]) -> dict[int, list[Event]]:
    out: dict[int, list[Event]] = {}
    for ev in events:
        out.setdefault(ev.conn_id, []).append(ev)
    return out


def dump_case(doc: dict) -> str:
    """A case file: one event per line, one expected record per line."""
    def block(items):
        if not items:
            return "[]"
        return "[\n" + ",\n".join("    " + json.dumps(x) for x in items) + "\n  ]"
    parts = []
    for k, v in doc.items():
        if k in ("events", "expected"):
            parts.append(f'  "{k}": {block(v)}')
        else:
            parts.append(f"  {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def regenerate(path: Path) -> None:
    """Rewrite a case's expected records from what the pipeline does now.  Only
    for new cases or reviewed changes: read the diff before committing it."""
    case = load_real(path) if path.suffix == ".rec" else load_hand(path)
    result = run(case)
    target = path.with_suffix(".json")
    doc = json.loads(target.read_text())
    doc["stream_gap"] = result.stream_gap
    doc["expected"] = result.records
    target.write_text(dump_case(doc))


if __name__ == "__main__":
    import sys
    for arg in sys.argv[1:]:
        regenerate(Path(arg))
