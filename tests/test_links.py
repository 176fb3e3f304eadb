"""Several aggregators: rendezvous ranking, the failover rule (fake clock), and
a real publisher moving between two real PULL sockets on loopback."""
from __future__ import annotations

import struct

import zmq

from conftest import wait_until
from s3slower.aggregator.pipeline import Pipeline
from s3slower.collector.links import Links
from s3slower.collector.publisher import Publisher
from s3slower.collector.rendezvous import BACK_AFTER_NS, DOWN_AFTER_NS, Failover, rank
from s3slower.common import protocol
from s3slower.common.losses import Loss
from s3slower.common.protocol import MsgKind

HOSTS = [f"host-{i:04d}" for i in range(2000)]
S = 1_000_000_000


def _eps(n: int) -> list[str]:
    return [f"tcp://agg{i}.example:5556" for i in range(n)]


def test_rank_is_a_stable_permutation():
    eps = _eps(5)
    for h in HOSTS[:50]:
        r = rank(h, eps)
        assert sorted(r) == list(range(5))
        assert rank(h, eps) == r
        # the order of the list given does not matter, only the endpoints
        assert [eps[i] for i in rank(h, eps[::-1][::-1])] == [eps[i] for i in r]
        rev = eps[::-1]
        assert [rev[i] for i in rank(h, rev)] == [eps[i] for i in r]


def test_adding_an_aggregator_moves_only_its_share():
    old, new = _eps(3), _eps(4)
    moved = 0
    for h in HOSTS:
        before, after = old[rank(h, old)[0]], new[rank(h, new)[0]]
        if before != after:
            assert after == new[3], f"{h} moved between old aggregators"
            moved += 1
    assert 0.18 * len(HOSTS) < moved < 0.32 * len(HOSTS)      # ~1/4


def test_removing_an_aggregator_moves_only_its_hosts():
    full, less = _eps(4), _eps(4)[:2] + _eps(4)[3:]
    for h in HOSTS:
        before = full[rank(h, full)[0]]
        after = less[rank(h, less)[0]]
        if before != full[2]:
            assert after == before
        else:           # its hosts go to their second choice
            assert after == full[rank(h, full)[1]]


def test_hosts_spread_over_aggregators():
    eps = _eps(4)
    counts = [0] * 4
    for h in HOSTS:
        counts[rank(h, eps)[0]] += 1
    assert all(400 < c < 600 for c in counts), counts


# -- the failover rule, on a fake clock ----------------------------------------

def test_stays_while_up_and_through_a_short_outage():
    f = Failover((1, 0, 2), 0)
    assert f.choose(0, [None, 0, None]) == 1
    assert f.choose(5 * S, [0, None, 0]) == 1               # down: not for 3 s yet
    assert f.choose(5 * S + DOWN_AFTER_NS - 1, [0, None, 0]) == 1
    assert f.moves == 0


def test_moves_to_the_next_live_one_in_rank_order_after_3_s():
    f = Failover((1, 0, 2), 0)
    f.choose(0, [None, 0, 0])
    f.choose(10 * S, [None, None, 0])                       # 1 went down at 10 s
    assert f.choose(10 * S + DOWN_AFTER_NS, [None, None, 0]) == 2   # 0 is down too
    assert f.moves == 1


def test_nothing_up_stays_put():
    f = Failover((0, 1), 0)
    assert f.choose(100 * S, [None, None]) == 0
    assert f.moves == 0


def test_moves_back_after_10_s_of_steady_health():
    f = Failover((0, 1), 0)
    f.choose(0, [None, 0])
    assert f.choose(DOWN_AFTER_NS, [None, 0]) == 1
    back = 20 * S
    assert f.choose(back + BACK_AFTER_NS - 1, [back, 0]) == 1
    assert f.choose(back + BACK_AFTER_NS, [back, 0]) == 0
    assert f.moves == 2


def test_a_flapping_first_choice_never_wins_its_hosts_back():
    f = Failover((0, 1), 0)
    f.choose(0, [None, 0])
    f.choose(DOWN_AFTER_NS, [None, 0])
    assert f.current == 1
    t = 10 * S
    for _ in range(20):                   # up 8 s, down 1 s, again and again
        for dt in range(0, 8 * S, S // 2):
            assert f.choose(t + dt, [t, 0]) == 1
        t += 9 * S
        f.choose(t - S, [None, 0])
    assert f.moves == 1


# -- a real publisher and two real aggregators' sockets ------------------------------

class Clock:
    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now


def _pull(ctx, port: int = 0):
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    if port:
        sock.bind(f"tcp://127.0.0.1:{port}")
    else:
        port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, port


def _receive(sock, pub: Publisher) -> protocol.Message:
    def got():
        pub.flush()
        return sock.poll(50)
    wait_until(got, 10, "a message")
    return protocol.decode(sock.recv())


def _events(pub: Publisher, n: int) -> None:
    pub.publish(MsgKind.EVENTS, {"events": [b"x" * 80] * n}, n_events=n)


def test_publisher_moves_away_and_back_and_sequences_stay_whole():
    ctx = zmq.Context()
    clock = Clock()
    (a, pa), (b, pb) = _pull(ctx), _pull(ctx)
    eps = [f"tcp://127.0.0.1:{pa}", f"tcp://127.0.0.1:{pb}"]
    host = next(h for h in HOSTS if rank(h, eps)[0] == 0)        # a first, then b
    pub = Publisher(ctx, eps, bind=False, hostname=host, wall_offset_ns=0, clock=clock)
    agg_a, agg_b = Pipeline(), Pipeline()
    try:
        pub.publish(MsgKind.HELLO, {"pid": 1})
        _events(pub, 3)
        for _ in range(2):
            agg_a.handle(_receive(a, pub), 0)
        assert pub.links.current == eps[0]
        a.close(0)                                              # the first one goes away
        wait_until(lambda: pub.flush() or pub.unconfirmed_events() == 3, 10,
                   "the drop to be seen")
        _events(pub, 2)                                         # waits in the outbox
        clock.now += DOWN_AFTER_NS
        moved = _receive(b, pub)
        assert pub.links.current == eps[1] and pub.take_moved() and not pub.take_moved()
        assert (moved.kind, moved.body["resync"], moved.seq) == (MsgKind.HELLO, True, 1)
        agg_b.handle(moved, 0)
        agg_b.handle(_receive(b, pub), 0)                       # the outbox's message
        a, _ = _pull(ctx, pa)                                   # the first one is back
        wait_until(lambda: pub.flush() or pub.links._up_since[0] is not None, 10,
                   "its handshake")
        clock.now += BACK_AFTER_NS
        _events(pub, 1)
        back = _receive(a, pub)
        assert (back.kind, back.seq) == (MsgKind.HELLO, 2) and pub.take_moved()
        agg_a.handle(back, 0)
        last = _receive(a, pub)
        assert (last.kind, last.seq) == (MsgKind.EVENTS, 3)
        agg_a.handle(last, 0)
        for agg in (agg_a, agg_b):
            assert agg.statistics().losses.get(Loss.TRANSPORT, 0) == 0
        assert pub.links.failover.moves == 2
        assert pub.statistics().dropped_events == 0
        assert pub.unconfirmed_events() == 3            # the 3 a had: counted, not lost unseen
    finally:
        pub.close()
        a.close(0)
        b.close(0)
        ctx.term()


class _PipeGoingAway:
    """A PUSH socket as libzmq may leave it for a moment after a drop: it takes
    every frame (for the pipe of the connection that is gone, to lose it); its
    monitor is fed by the test."""

    def __init__(self, ctx: zmq.Context, calls: list):
        self.ctx, self.calls, self.sent = ctx, calls, []

    def get_monitor_socket(self, events: int) -> zmq.Socket:
        self.calls.append("monitor")
        mon = self.ctx.socket(zmq.PAIR)
        addr = f"inproc://monitor-{id(self)}"
        mon.bind(addr)
        self.feed = self.ctx.socket(zmq.PAIR)
        self.feed.connect(addr)
        return mon

    def connect(self, endpoint: str) -> None:
        self.calls.append("connect")

    def send(self, frame: bytes, flags: int) -> None:
        self.sent.append(frame)

    def event(self, event: int) -> None:
        self.feed.send_multipart([struct.pack("=hi", event, 0), b"tcp://agg"])

    def disable_monitor(self) -> None:
        pass

    def close(self, linger: int = 0) -> None:
        self.feed.close(0)


def test_nothing_is_handed_to_a_link_from_its_drop_until_it_is_up_again():
    ctx, calls, socks = zmq.Context(), [], []

    def make():
        socks.append(_PipeGoingAway(ctx, calls))
        return socks[-1]
    links = Links(make, ["tcp://a:1", "tcp://b:1"], "h", Clock())
    first = socks[links.failover.current]

    def up():
        return links._up_since[links.failover.current] is not None
    try:
        # the monitor before the connection: a quick handshake is not missed
        assert calls == ["monitor", "connect"] * 2
        assert not links.send(b"early", 1)                       # not up yet
        first.event(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        wait_until(lambda: links.poll() or up(), 10, "its handshake")
        assert links.send(b"one", 3)
        first.event(zmq.EVENT_DISCONNECTED)
        wait_until(lambda: links.poll() or not up(), 10, "its drop")
        assert links.unconfirmed_events == 3
        assert not links.send(b"two", 2)        # the socket would take it, and lose it
        first.event(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        wait_until(lambda: links.poll() or up(), 10, "its handshake again")
        assert links.send(b"three", 1)
        assert first.sent == [b"one", b"three"] and links.failover.moves == 0
    finally:
        links.close()
        ctx.term()


def test_one_endpoint_is_one_socket_without_links():
    ctx = zmq.Context()
    sock, port = _pull(ctx)
    pub = Publisher(ctx, (f"tcp://127.0.0.1:{port}",), bind=False, hostname="h",
                    wall_offset_ns=0)
    try:
        assert pub.links is None and pub.sock is not None
        assert pub.sock.get(zmq.HEARTBEAT_IVL) == 0          # as before: no ZMTP heartbeats
        pub.publish(MsgKind.HELLO, {"pid": 1})
        assert _receive(sock, pub).seq == 0
    finally:
        pub.close()
        sock.close(0)
        ctx.term()


def test_reported_losses_are_counted_once_across_moves():
    """A collector's running totals reach whichever aggregator it talks to:
    each counts only what grew while the host was its own."""
    a, b = Pipeline(), Pipeline()
    seq = iter(range(100))

    def beat(agg, outbox):
        agg.handle(protocol.Message(MsgKind.HEARTBEAT, "h", 7, next(seq), 0,
                                    {"stats": {}, "lost": {"collector_outbox": outbox}}), 0)

    def resync(agg, outbox):
        agg.handle(protocol.Message(MsgKind.HELLO, "h", 7, next(seq), 0,
                                    {"pid": 1, "resync": True, "stats": {},
                                     "lost": {"collector_outbox": outbox}}), 0)

    def total():
        return sum(p.statistics().losses.get(Loss.COLLECTOR_OUTBOX, 0) for p in (a, b))
    beat(a, 5)
    resync(b, 5)             # it moved; the last beat a got said 5
    assert total() == 5
    beat(b, 7)
    assert total() == 7
    resync(a, 7)             # and back
    beat(a, 9)
    assert total() == 9
    assert [p.statistics().losses[Loss.COLLECTOR_OUTBOX] for p in (a, b)] == [7, 2]
    a.handle(protocol.Message(MsgKind.HELLO, "h", 8, 0, 0, {"pid": 2}), 0)   # a restart
    assert a.statistics().losses[Loss.COLLECTOR_OUTBOX] == 7


def test_a_resync_hello_is_checked_like_a_heartbeat():
    import pytest
    bad = protocol.encode(protocol.Message(MsgKind.HELLO, "h", 1, 0, 0,
                                           {"pid": 1, "resync": True, "lost": {"x": "1"},
                                            "stats": {}}))
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(bad)
