"""Records gather after a small drain (collector/service.py): the whole
GATHER_NS when the ring stays light, cut short when a quarter of the ring
waits or a signal comes; the ring's fill is read from its position pages."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from s3slower.collector import hostprep, service
from s3slower.collector.probes import Probes, ProgramOptions


class FakeWaiter:
    """pause() advances a fake clock by its timeout; `signal_at`: the pause
    (counted from 1) that a signal ends."""

    def __init__(self, clock: list[int], signal_at: int = 0):
        self.clock, self.signal_at, self.pauses = clock, signal_at, []

    def pause(self, timeout_ms: int) -> bool:
        self.pauses.append(timeout_ms)
        self.clock[0] += timeout_ms * 1_000_000
        return len(self.pauses) == self.signal_at


def _gather(waiting: list[int], signal_at: int = 0):
    """Run Collector._gather against a ring whose fill at each look is `waiting`."""
    clock = [0]
    looks = iter(waiting)
    fake = SimpleNamespace(clock=lambda: clock[0], probes=SimpleNamespace(
        wake_bytes=1000, waiting_bytes=lambda: next(looks)))
    waiter = FakeWaiter(clock, signal_at)
    service.Collector._gather(fake, waiter)
    return waiter.pauses, clock[0]


def test_a_light_ring_gathers_the_whole_time_looking_at_it_between():
    pauses, spent = _gather([0, 10, 200, 999, 400])
    assert spent == service.GATHER_NS
    assert pauses == [service.GATHER_CHECK_NS // 1_000_000] * \
        (service.GATHER_NS // service.GATHER_CHECK_NS)


def test_a_quarter_of_the_ring_waiting_ends_the_gather():
    pauses, spent = _gather([0, 1000])
    assert len(pauses) == 2 and spent == 2 * service.GATHER_CHECK_NS


def test_a_signal_ends_the_gather_without_looking_at_the_ring():
    pauses, spent = _gather([], signal_at=1)      # no look: next() would raise
    assert len(pauses) == 1


@pytest.mark.e2e
def test_the_rings_fill_is_read_from_its_position_pages(tmp_path):
    """Probes.waiting_bytes: records a curl made wait in the ring until drained."""
    hostprep.prepare()
    records: list[bytes] = []
    server = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=tmp_path)
    try:
        port = int(server.stdout.readline().split("port ")[1].split()[0])
        probes = Probes(ProgramOptions(trace_all=True, self_pid=os.getpid()), records.append)
        try:
            probes.consume()
            assert subprocess.run(["curl", "-s", "-o", "/dev/null",
                                   f"http://127.0.0.1:{port}/"], timeout=10).returncode == 0
            time.sleep(0.2)
            before = probes.waiting_bytes()
            probes.consume()
            after = probes.waiting_bytes()
        finally:
            probes.close()
    finally:
        server.kill()
        server.wait()
    assert records and before >= sum(len(r) for r in records) > 0
    assert after < before
