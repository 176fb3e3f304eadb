"""JSON-lines log of records (SPEC §6), rotated by size, never blocking the tracer.

Invariants
* One record is one line (`records.to_json`, compact, ASCII), and a line
  is written whole into one file: the file is rotated *before* a line that
  would take it past `max_size_bytes`.  A single line longer than that gets a
  file of its own (the only way a file exceeds the size).
* `s3slower.log` is the live file; `s3slower.log.1` the newest backup up to
  `s3slower.log.N` the oldest, N = `max_backups` (0: no backups kept).
* `write()` never blocks: records go through a bounded queue (LOG_QUEUE_RECORDS)
  to one daemon writer thread (`queuewriter.QueueWriter`); a record that finds
  the queue full is dropped and counted (`records_dropped`).
* Failures (unwritable or missing directory, ENOSPC, EROFS, EIO ...) are
  reported once per kind of error (errno) through `on_error` (default:
  logging.warning), counted in `write_errors`, and the records that could not
  be written in `records_failed`.  A partly written batch is truncated back, so
  a file never holds a cut line.  Every batch tries again; tracing goes on.
* Files are created mode 0640: records name buckets, keys and processes.
"""
from __future__ import annotations

import errno as _errno
import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional

from s3slower.aggregator.queuewriter import QueueWriter
from s3slower.aggregator.records import Record, to_json

# ~1 s of a very busy host's records (~400 B each on disk, ~1 KB queued):
# a disk slower than that for longer is not keeping up, and memory must not
# grow without bound waiting for it.
LOG_QUEUE_RECORDS = 10_000
WRITE_BATCH_RECORDS = 1_000      # records joined into one write() when they fit
FILE_MODE = 0o640
CLOSE_TIMEOUT_S = 5.0

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogStatistics:
    records_written: int
    records_dropped: int          # the queue was full (or the log closed)
    records_failed: int           # could not be written (I/O error)
    bytes_written: int
    rotations: int
    write_errors: int
    queued: int
    last_error: str               # "" until something failed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class RotatingJsonLog:
    def __init__(self, directory: str, *, max_size_bytes: int, max_backups: int,
                 filename: str = "s3slower.log",
                 on_error: Optional[Callable[[str], None]] = None,
                 max_queued_records: int = LOG_QUEUE_RECORDS):
        if max_size_bytes <= 0 or max_backups < 0:
            raise ValueError("max_size_bytes must be > 0 and max_backups >= 0")
        self.directory = directory
        self.path = os.path.join(directory, filename)
        self.max_size_bytes = max_size_bytes
        self.max_backups = max_backups
        self.on_error = on_error or _log.warning
        self._fd: Optional[int] = None
        self._size = 0
        self._written = self._failed = self._bytes = 0       # writer thread
        self._rotations = self._errors = 0
        self._last_error = ""
        self._reported: set[int] = set()
        self._writer = QueueWriter(self._write_records, name="s3slower-logfile",
                                   max_queued=max_queued_records, batch=WRITE_BATCH_RECORDS,
                                   on_stop=self._close_fd)

    # -- the caller's side (never blocks) -----------------------------------------
    def write(self, rec: Record) -> None:
        self._writer.put(rec)

    emit = write                                  # the aggregator's Sink protocol
    emit_opaque = write                           # opaque_tls lines (aggregator/opaque.py)
    emit_multipart = write                        # multipart_upload lines (aggregator/multipart.py)

    def tick(self, stats: object, now_wall_ns: int) -> None:
        pass

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued and close the file (waits at most ~timeout_s)."""
        self._writer.close(timeout_s)

    def statistics(self) -> LogStatistics:
        return LogStatistics(self._written, self._writer.dropped, self._failed, self._bytes,
                             self._rotations, self._errors, self._writer.queued,
                             self._last_error)

    # -- the writer thread -----------------------------------------------------------
    def _write_records(self, records: list[Record]) -> None:
        self._write_lines([_line(r) for r in records])

    def _write_lines(self, lines: list[bytes]) -> None:
        if lines and self._fd is None and not self._open():   # also learns the size
            self._failed += len(lines)
            return
        pending: list[bytes] = []
        pending_size = 0
        for line in lines:
            if self._size + pending_size + len(line) > self.max_size_bytes \
                    and self._size + pending_size > 0:
                self._flush(pending)
                pending, pending_size = [], 0
                if not self._rotate():
                    self._failed += 1
                    continue
            pending.append(line)
            pending_size += len(line)
        self._flush(pending)

    def _flush(self, lines: list[bytes]) -> None:
        if not lines:
            return
        if self._fd is None and not self._open():
            self._failed += len(lines)
            return
        data = b"".join(lines)
        try:
            _write_all(self._fd, data)
        except OSError as e:
            self._undo_partial_write()
            self._failed += len(lines)
            self._report("write", e)
            self._close_fd()
            return
        self._size += len(data)
        self._bytes += len(data)
        self._written += len(lines)

    def _undo_partial_write(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as e:
            self._report("truncate after a failed write", e)

    def _open(self) -> bool:
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         FILE_MODE)
        except OSError as e:
            self._report("open", e)
            return False
        self._fd = fd
        self._size = os.fstat(fd).st_size
        return True

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as e:
                self._report("close", e)

    def _rotate(self) -> bool:
        """Live file -> .1 -> .2 ... -> .N (the oldest falls off)."""
        self._close_fd()
        try:
            if self.max_backups == 0:
                os.unlink(self.path)
            else:
                for i in range(self.max_backups - 1, 0, -1):
                    older = f"{self.path}.{i}"
                    if os.path.exists(older):
                        os.replace(older, f"{self.path}.{i + 1}")
                os.replace(self.path, f"{self.path}.1")
        except FileNotFoundError:
            pass                                  # someone removed it: start afresh
        except OSError as e:
            self._report("rotate", e)
            return False
        self._size = 0
        self._rotations += 1
        return True

    def _report(self, what: str, err: OSError) -> None:
        self._errors += 1
        reason = err.strerror or _errno.errorcode.get(err.errno or 0, str(err))
        self._last_error = f"{what}: {reason}"
        kind = err.errno if err.errno is not None else -1
        if kind in self._reported:
            return
        self._reported.add(kind)
        self.on_error(f"log file {self.path}: cannot {what}: {reason}; records are "
                      f"counted and dropped, tracing goes on")


def _line(rec: Record) -> bytes:
    return (to_json(rec, compact=True) + "\n").encode()
