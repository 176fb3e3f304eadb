"""Counted request errors explained: one `--debug` line per error record.

Every record the pipeline counts in `errors` (a 4xx/5xx status, or not
complete) is told on the `s3slower.errors` logger at DEBUG: which connection
(collector host, pid, comm, the kernel's connection id, endpoint), which
request, and why — its status and S3 error code, or what ended the request
before its response did (`Record.why_incomplete`).  Rate-limited as the
ledger's reasons are (reasons.ReasonLimiter, its own instance: a storm of
S3 errors does not hide a loss's reasons); nothing is formatted unless DEBUG
is on.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from s3slower.aggregator.records import Record
from s3slower.reasons import ReasonLimiter

LABEL = "errors"            # the stop summary's key for these records
log = logging.getLogger("s3slower.errors")
_limiter = ReasonLimiter()


def explain(rec: Record, conn_id: int, clock: Callable[[], float] = time.monotonic) -> None:
    if not log.isEnabledFor(logging.DEBUG):
        return
    line = _limiter.admit(LABEL, f"{rec.hostname} pid {rec.pid} ({rec.comm}) conn {conn_id:#x} "
                          f"to {rec.endpoint}: {rec.operation} {rec.method} {rec.path} -> "
                          f"{reason(rec)}", 1, clock())
    if line is not None:
        log.debug("%s", line)


def reason(rec: Record) -> str:
    """Why a record counts as an error, in words."""
    if not rec.complete:
        return f"status {rec.status_code}, incomplete: {rec.why_incomplete or 'unknown'}"
    return f"status {rec.status_code}" + (f" {rec.error_code}" if rec.error_code else "")
