"""Long fuzz run of tests/test_fuzz.py's properties, without hypothesis.

    python -m bench.fuzz --inputs 1000000 [--seed N]

Feeds random and mutated calls through the HTTP Parser and Connection, mutated
golden streams through the Pipeline, mutated frames through protocol.decode and
events.decode_event.  Stops at the first exception that is not ProtocolError /
MalformedEvent or the first bound broken, printing the seed and input number so
it can be replayed; prints inputs/s at the end.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from golden import harness  # noqa: E402
from s3slower.aggregator.correlate import Connection, Peer  # noqa: E402
from s3slower.aggregator.http1 import Chunk, Parser  # noqa: E402
from s3slower.common import protocol  # noqa: E402
from s3slower.common.events import MalformedEvent, decode_event, encode_event  # noqa: E402
from s3slower.common.protocol import Message, MsgKind  # noqa: E402
import test_fuzz as props  # noqa: E402


def random_call(rng: random.Random) -> tuple[bytes, int, bytes]:
    parts = [rng.choice(props.FRAGMENTS) if rng.random() < 0.6
             else rng.randbytes(rng.randrange(64)) for _ in range(rng.randrange(8))]
    hidden = rng.choice((0, 0, 0, rng.randrange(5000)))
    return b"".join(parts), hidden, rng.randbytes(rng.randrange(17)) if hidden else b""


def one(rng: random.Random, cases: list) -> None:
    kind = rng.randrange(4)
    if kind == 0:
        s = Parser()
        for t in range(rng.randrange(40)):
            data, hidden, tail = random_call(rng)
            s.feed(rng.random() < 0.5, Chunk(data, len(data) + hidden, t, t + 1, tail),
                   rng.choice(("GET", "HEAD", "")))
            props.check_parser_bounds(s)
        s.close()
    elif kind == 1:
        c = Connection(Peer("h", 1, "c", {}, ""), 0)
        for t in range(rng.randrange(60)):
            data, hidden, tail = random_call(rng)
            c.feed(rng.random() < 0.5, Chunk(data, len(data) + hidden, t, t + 1, tail), 1)
            props.check_parser_bounds(c.parser)
        c.close()
    elif kind == 2:
        case = rng.choice(cases)
        harness.run(case, props.mutated_events(case, rng), batch=rng.choice((1, 7, 100)))
    else:
        case = rng.choice(cases)
        frame = protocol.encode(Message(MsgKind.EVENTS, "h", 1, 0, 0, {
            "events": [encode_event(e) for e in case.events[:10]]}))
        try:
            msg = protocol.decode(props.mutate(frame, rng))
        except protocol.ProtocolError:
            return
        for raw in msg.body["events"] if msg.kind is MsgKind.EVENTS else ():
            try:
                decode_event(raw)
            except MalformedEvent:
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    cases = [c for c in harness.all_cases() if len(c.events) < 400]   # keep inputs quick
    t0 = time.monotonic()
    for i in range(args.inputs):
        rng = random.Random(args.seed * 1_000_003 + i)
        try:
            one(rng, cases)
        except Exception:
            print(f"input {i} of seed {args.seed} failed: rerun with "
                  f"random.Random({args.seed * 1_000_003 + i})", file=sys.stderr)
            raise
        if i and i % 10_000 == 0:
            print(f"{i} inputs, {i / (time.monotonic() - t0):.0f}/s", flush=True)
    dt = time.monotonic() - t0
    print(f"fuzz: {args.inputs} inputs, no failure, {args.inputs / dt:.0f} inputs/s")


if __name__ == "__main__":
    main()
