"""How exactly the reported latency matches a known, injected delay.

tests/latency_rig.py's slow proxy (in front of bench/s3server.py here, which
answers in microseconds) holds chosen responses: 150 ms before a GET's first
byte, 100 ms before a HEAD's, and for a 2 MB GET 100 ms before the first byte
then the body in 10 slices over 300 ms.  A real boto3 client goes through it
while the real collector traces it.  tests/test_e2e_latency.py holds the
bounds that follow from cause and effect; the precision is this bench's:

* latency above the injected delay, worst call: target <= 5 ms
* ttfb above the delay before the first byte, worst call: target <= 5 ms
* the spread body seen as latency - ttfb, as a share of D2, worst call:
  target >= 8/9 (the first slice may be read late by up to one slice)

    python -m bench latency
"""
from __future__ import annotations

import subprocess
import sys

from bench.harness import ROOT, BenchError, Figure, log

sys.path.insert(0, str(ROOT / "tests"))
import latency_rig  # noqa: E402

SLACK_MS = 5.0
ROUNDS = 5
SPREAD_TARGET = (latency_rig.THROTTLE_SLICES - 2) / (latency_rig.THROTTLE_SLICES - 1)


def _upstream() -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, "-m", "bench.s3server", "--port", "0"],
                         stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    line = p.stdout.readline().split()
    if not line or line[0] != "port":
        p.kill()
        raise BenchError("the bench S3 server did not start")
    return p, int(line[1])


def run(quick: bool = False) -> list[Figure]:
    rounds = 2 if quick else ROUNDS
    server, port = _upstream()
    try:
        with latency_rig.slow_proxy(port) as url:
            try:
                samples = latency_rig.traced_samples(url, rounds)
            except TimeoutError as exc:
                raise BenchError(str(exc)) from exc
    finally:
        server.kill()
        server.wait(5)
    for s in samples:
        log(f"latency {s.key}: injected {s.d1_ms:g}+{s.d2_ms:g} ms, ttfb {s.ttfb_ms:.2f}, "
            f"latency {s.latency_ms:.2f}, client {s.client_ms:.2f} ms")
    if not samples or not all(s.complete and s.status_code == 200 for s in samples):
        raise BenchError(f"incomplete or failed calls: {samples}")
    over = max(s.latency_ms - s.d1_ms - s.d2_ms for s in samples)
    first = max(s.ttfb_ms - s.d1_ms for s in samples)
    spread = min((s.latency_ms - s.ttfb_ms) / s.d2_ms for s in samples if s.d2_ms)
    n = len(samples)
    return [
        Figure(f"latency: reported above injected delay (worst of {n})", over, "ms",
               f"<= {SLACK_MS:g} ms", 0 <= over <= SLACK_MS),
        Figure(f"latency: ttfb above injected first-byte delay (worst of {n})", first, "ms",
               f"<= {SLACK_MS:g} ms", 0 <= first <= SLACK_MS),
        Figure("latency: spread body seen, (latency - ttfb) / D2 (worst)", spread, "",
               f">= {SPREAD_TARGET:.3f}", spread >= SPREAD_TARGET),
    ]
