"""Records gather after a small drain (collector/service.py): GATHER_NS
before they go out as one message, the ring drained into it every
GATHER_CHECK_NS meanwhile and what the records say of processes handled at
once; a signal ends the gather."""
from __future__ import annotations

from types import SimpleNamespace

from s3slower.collector import service


class FakeWaiter:
    """pause() advances a fake clock by its timeout; `signal_at`: the pause
    (counted from 1) that a signal ends."""

    def __init__(self, clock: list[int], signal_at: int = 0):
        self.clock, self.signal_at, self.pauses = clock, signal_at, []

    def pause(self, timeout_ms: int) -> bool:
        self.pauses.append(timeout_ms)
        self.clock[0] += timeout_ms * 1_000_000
        return len(self.pauses) == self.signal_at


def _gather(signal_at: int = 0):
    """Collector._gather with a fake clock and waiter; what it did, in order."""
    clock = [0]
    done: list[tuple[str, int]] = []
    fake = SimpleNamespace(
        clock=lambda: clock[0],
        probes=SimpleNamespace(consume=lambda: done.append(("drain", clock[0]))),
        _handle_lifecycle=lambda: done.append(("lifecycle", clock[0])),
        _announce_connected=lambda: done.append(("announce", clock[0])))
    waiter = FakeWaiter(clock, signal_at)
    service.Collector._gather(fake, waiter)
    return waiter.pauses, clock[0], done


def test_records_gather_the_whole_time_the_ring_drained_between():
    pauses, spent, done = _gather()
    checks = service.GATHER_NS // service.GATHER_CHECK_NS
    assert spent == service.GATHER_NS
    assert pauses == [service.GATHER_CHECK_NS // 1_000_000] * checks
    # after each pause: the ring drained, then exec/exit and first connects
    assert done == [(what, k * service.GATHER_CHECK_NS) for k in range(1, checks + 1)
                    for what in ("drain", "lifecycle", "announce")]


def test_a_signal_ends_the_gather_at_once():
    pauses, spent, done = _gather(signal_at=2)
    assert len(pauses) == 2 and spent == 2 * service.GATHER_CHECK_NS
    assert [what for what, _ in done] == ["drain", "lifecycle", "announce"]
