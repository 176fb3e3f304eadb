"""Several aggregators: one PUSH socket per endpoint, the one in use chosen by
collector/rendezvous.py (docs/scaling.md, docs/protocol.md "Several aggregators").

Each socket is connected all the time, with ZMTP heartbeats (HEARTBEAT_IVL
1 s, HEARTBEAT_TIMEOUT 3 s: libzmq PINGs the peer and drops a connection
that sends nothing back for 3 s) and a socket monitor: a link is up from its
handshake (ZMTP, and CURVE when configured: a refused key never comes up)
until it disconnects.  Only the link in use is sent on, and only while it
is up; the others stay connected so that their health is known before hosts
move to them or back.

What ZeroMQ held for a link when its connection dropped is gone with it and
ZeroMQ does not say how much: the events handed to that link in its last
HEARTBEAT_TIMEOUT_MS are counted as `failover` (possibly lost, an upper
bound; common/losses.py).  Messages still in the collector's own outbox are
not lost by a move: they go to the next link.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Callable, Optional, Sequence

import zmq
from zmq.utils.monitor import recv_monitor_message

from s3slower.collector.rendezvous import Failover, rank

log = logging.getLogger("s3slower")

HEARTBEAT_IVL_MS = 1_000
HEARTBEAT_TIMEOUT_MS = 3_000
# Reconnecting to an aggregator that is away backs off from libzmq's 100 ms
# to this: a fleet does not hammer a dead host, and a return is seen well
# within BACK_AFTER_NS.
RECONNECT_IVL_MAX_MS = 2_000
_MONITORED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
# The events handed to a link, per SLOT_NS, over its last HEARTBEAT_TIMEOUT_MS:
# at most WINDOW_SLOTS + 1 slots, whatever the rate.
SLOT_NS = 100_000_000
WINDOW_SLOTS = HEARTBEAT_TIMEOUT_MS * 1_000_000 // SLOT_NS


class Links:
    """`send` on the link in use; `poll` reads the monitors and moves (True
    when it moved).  `make_socket()` returns a PUSH socket, not yet connected:
    its monitor comes first, or a quick handshake is missed and the link never
    seen up."""

    def __init__(self, make_socket: Callable[[], zmq.Socket], endpoints: Sequence[str],
                 hostname: str, clock: Callable[[], int] = time.monotonic_ns):
        self.endpoints = tuple(endpoints)
        self.clock = clock
        self._socks, self._monitors = [], []
        for ep in self.endpoints:
            sock = make_socket()
            self._monitors.append(sock.get_monitor_socket(_MONITORED))
            sock.connect(ep)
            self._socks.append(sock)
        self._up_since: list[Optional[int]] = [None] * len(self.endpoints)
        self._recent: list[collections.deque] = [collections.deque() for _ in self.endpoints]
        self.failover = Failover(rank(hostname, self.endpoints), clock())
        self.unconfirmed_events = 0

    @property
    def current(self) -> str:
        return self.endpoints[self.failover.current]

    def poll(self) -> bool:
        now = self.clock()
        for i, mon in enumerate(self._monitors):
            while True:
                try:
                    event = recv_monitor_message(mon, zmq.NOBLOCK)["event"]
                except zmq.Again:
                    break
                if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._up_since[i] = self._up_since[i] or now
                elif event == zmq.EVENT_DISCONNECTED:
                    self._dropped(i, now)
        before = self.failover.current
        after = self.failover.choose(now, self._up_since)
        if after == before:
            return False
        log.warning("s3slower collector: now sending to %s (%s)", self.endpoints[after],
                    f"{self.endpoints[before]} down for 3 s" if self._up_since[before] is None
                    else "a better-ranked one is back")
        return True

    def _dropped(self, i: int, now: int) -> None:
        self._up_since[i] = None
        recent = self._recent[i]
        horizon = now // SLOT_NS - WINDOW_SLOTS
        self.unconfirmed_events += sum(n for slot, n in recent if slot >= horizon)
        recent.clear()

    def send(self, frame: bytes, n_events: int) -> bool:
        """Hand one frame to the link in use; False when it takes none now.
        None while its monitor says it is down: libzmq may still take frames
        for the pipe of the connection that dropped, and lose them uncounted
        (its failover count was taken at the drop); they wait in the outbox."""
        i = self.failover.current
        if self._up_since[i] is None:
            return False
        try:
            self._socks[i].send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return False
        if n_events:
            slot, recent = self.clock() // SLOT_NS, self._recent[i]
            if recent and recent[-1][0] == slot:
                recent[-1][1] += n_events
            else:
                recent.append([slot, n_events])
                while recent[0][0] < slot - WINDOW_SLOTS:
                    recent.popleft()
        return True

    def close(self) -> None:
        for sock in self._socks:
            sock.disable_monitor()
            sock.close(0)
        for mon in self._monitors:
            mon.close(0)
