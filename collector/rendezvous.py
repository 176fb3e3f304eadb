"""Which aggregator a collector talks to, among several: rendezvous hashing
and the failover rule (pure: no sockets, time is an argument).

Every collector ranks the aggregator endpoints by a hash of (its host name,
the endpoint), highest first: the same list everywhere, no coordinator.
Adding an endpoint moves only the hosts that rank it first, about 1/(n+1)
of them; removing one moves only its own hosts.

`Failover.choose` applies the rule, once per loop, from each link's state:
* stay on the current link while it is up (or down for less than DOWN_AFTER_NS);
* down that long: move to the first link, in rank order, that is up now
  (none up: stay; the outbox holds what it can, docs/protocol.md);
* on a link that is not the first choice: move back to a better-ranked link
  once it has been up, without a break, for BACK_AFTER_NS.  Leaving takes 3 s
  and coming back 10 s of steady health, so a link that flaps never wins
  its hosts back until it holds.
"""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

DOWN_AFTER_NS = 3_000_000_000      # three missed heartbeat periods (SPEC §7)
BACK_AFTER_NS = 10_000_000_000     # steady health before hosts come back


def rank(hostname: str, endpoints: Sequence[str]) -> tuple[int, ...]:
    """Indexes of `endpoints`, the host's first choice first."""
    return tuple(sorted(range(len(endpoints)),
                        key=lambda i: (-_score(hostname, endpoints[i]), endpoints[i])))


def _score(hostname: str, endpoint: str) -> int:
    digest = hashlib.blake2b(f"{hostname}\0{endpoint}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Failover:
    """The current link among links ranked for one host (`order`, first choice
    first).  `up_since[i]`: monotonic ns since when link i has been up without
    a break, None while it is down; `down_since` likewise for being down."""

    def __init__(self, order: Sequence[int], now_ns: int):
        self.order = tuple(order)
        self.current = self.order[0]
        self._down_since: dict[int, int] = {i: now_ns for i in self.order}
        self.moves = 0

    def choose(self, now_ns: int, up_since: Sequence[Optional[int]]) -> int:
        """The link to send on now (self.current, updated)."""
        for i in self.order:
            if up_since[i] is not None:
                self._down_since.pop(i, None)
            else:
                self._down_since.setdefault(i, now_ns)
        cur = self.current
        better = self.order[:self.order.index(cur)]
        back = [i for i in better if up_since[i] is not None
                and now_ns - up_since[i] >= BACK_AFTER_NS]
        if back:
            return self._move(back[0])
        down = self._down_since.get(cur)
        if down is not None and now_ns - down >= DOWN_AFTER_NS:
            live = [i for i in self.order if up_since[i] is not None]
            if live:
                return self._move(live[0])
        return cur

    def _move(self, to: int) -> int:
        if to != self.current:
            self.current = to
            self.moves += 1
        return to
