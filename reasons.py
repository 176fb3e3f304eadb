"""Why each counted loss or error happened: one line under `--debug`, rate limited.

`note(loss, reason)` is called where a ledger member (common/losses.py) is
counted.  With debug logging off it costs one level check.  On, the first
FIRST_PER_SOURCE reasons of each member are logged as they come; after that
at most one line per EVERY_S per member, saying how many were not shown.
Both halves use it (the collector's reasons stay on the collector's stderr).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from s3slower.common.losses import Loss

FIRST_PER_SOURCE = 10      # a burst's first reasons are the useful ones
EVERY_S = 10.0             # then one line per member per this many seconds

log = logging.getLogger("s3slower.losses")


class ReasonLimiter:
    """The rate limit alone: `admit` says which line to log now, if any.
    Lines are limited per label (a ledger member's, or another counter's)."""

    def __init__(self, first: int = FIRST_PER_SOURCE, every_s: float = EVERY_S):
        self.first = first
        self.every_s = every_s
        self._seen: dict[str, int] = {}
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, label: str, reason: str, n: int, now_s: float) -> Optional[str]:
        seen = self._seen.get(label, 0)
        self._seen[label] = seen + 1
        what = f"{label} +{n}: {reason}"
        if seen < self.first:
            return what
        if now_s < self._next.get(label, 0.0):
            self._held[label] = self._held.get(label, 0) + 1
            return None
        self._next[label] = now_s + self.every_s
        held = self._held.pop(label, 0)
        return what + (f" ({held} more {label} reasons not shown)" if held else "")


_limiter = ReasonLimiter()


def note(loss: Loss, reason: str, n: int = 1,
         clock: Callable[[], float] = time.monotonic) -> None:
    """`n` of `loss` were just counted, because of `reason`."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    line = _limiter.admit(loss.label, reason, n, clock())
    if line is not None:
        log.debug("%s", line)
