"""End to end latency: a slow proxy on loopback in front of moto delays chosen
requests by a known amount (tests/latency_rig.py); a real boto3 client, the
real BPF collector, the aggregator pipeline.

What holds on any machine, however slow or busy, because it follows from
cause and effect: the reported latency is at least the injected delay and at
most what the client measured around its call; ttfb is at least the delay
before the first byte and at most the time the client had the response head
back; a large body spread over D2 ends after its first byte.  How close to
the injected delay the figures come (a few ms) is a speed figure of the
machine: `python -m bench latency` prints it against its target.
"""
from __future__ import annotations

import pytest

from conftest import need_root_bpf
from latency_rig import BIG, RULES, THROTTLE_SLICES, slow_proxy, traced_samples

pytestmark = pytest.mark.e2e
ROUNDS = 3


def test_injected_delay_is_what_is_reported(moto_http):
    need_root_bpf()
    with slow_proxy(int(moto_http.url.rsplit(":", 1)[1])) as url:
        samples = traced_samples(url, ROUNDS)
    assert sorted(s.key for s in samples) == sorted(list(RULES) * ROUNDS)
    report = []
    for s in samples:
        report.append((s.key, s.d1_ms + s.d2_ms, round(s.ttfb_ms, 2), round(s.latency_ms, 2),
                       round(s.client_head_ms, 2), round(s.client_ms, 2)))
        where = (f"{s.key}: injected {s.d1_ms}+{s.d2_ms} ms, ttfb {s.ttfb_ms:.2f}, latency "
                 f"{s.latency_ms:.2f}, client head {s.client_head_ms:.2f}, "
                 f"client {s.client_ms:.2f}")
        assert s.complete and s.status_code == 200, where
        assert s.d1_ms + s.d2_ms <= s.latency_ms <= s.client_ms, where
        assert s.d1_ms <= s.ttfb_ms <= s.client_head_ms, where
        if s.d2_ms:
            # BIG bytes take many reads: the first byte's read ends before the last's
            assert s.ttfb_ms < s.latency_ms, where
            assert s.response_size == BIG, where
    print(f"\n(key, injected ms, ttfb ms, latency ms, client head ms, client ms), "
          f"body in {THROTTLE_SLICES} slices\n" + "\n".join(map(str, report)))
