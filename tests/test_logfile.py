"""Log file: JSON lines, size rotation, backups, no cut records, failures reported once."""
from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import pytest

from s3slower.aggregator import logfile
from s3slower.aggregator.logfile import RotatingJsonLog
from s3slower.aggregator.records import Record


def rec(i: int = 0, **kw) -> Record:
    fields = dict(start_wall_ns=1_700_000_000_000_000_000 + i * 1000, hostname="h1",
                  pid=100 + i, tid=100 + i, comm="aws", method="PUT", operation="PutObject",
                  bucket="bucket", key=f"dir/{i:06d}/" + "x" * (i % 97), endpoint="s3:9000",
                  path=f"/bucket/dir/{i:06d}", status_code=200, error_code="",
                  request_size=i, response_size=0, ttfb_ns=1_000_000, latency_ns=2_000_000,
                  tls="none", complete=True, labels={"client": "aws-cli"})
    fields.update(kw)
    return Record(**fields)


def log_files(d: Path, name: str = "s3slower.log") -> list[Path]:
    """Oldest first: .N ... .1, then the live file."""
    backups = sorted((p for p in d.glob(name + ".*")), key=lambda p: -int(p.suffix[1:]))
    live = d / name
    return backups + ([live] if live.exists() else [])


def read_back(d: Path) -> list[dict]:
    out = []
    for p in log_files(d):
        data = p.read_bytes()
        assert data == b"" or data.endswith(b"\n"), p      # no cut line at the end
        out += [json.loads(line) for line in data.splitlines()]
    return out


def write_all(log: RotatingJsonLog, records: list[Record]) -> None:
    for r in records:
        log.write(r)
    log.close()


def test_every_record_read_back_in_order_and_sizes_respected(tmp_path):
    records = [rec(i) for i in range(2000)]
    log = RotatingJsonLog(str(tmp_path), max_size_bytes=20_000, max_backups=1000)
    write_all(log, records)
    s = log.statistics()
    assert (s.records_written, s.records_dropped, s.records_failed) == (2000, 0, 0)
    assert read_back(tmp_path) == [r.to_json_dict() for r in records]
    files = log_files(tmp_path)
    assert len(files) == s.rotations + 1 > 10
    for older, newer in zip(files, files[1:]):
        size = older.stat().st_size
        first_of_next = len(newer.read_bytes().split(b"\n", 1)[0]) + 1
        assert size <= 20_000 < size + first_of_next     # rotated just before overflowing
    assert files[-1].stat().st_size <= 20_000
    assert oct(files[-1].stat().st_mode & 0o777) == oct(logfile.FILE_MODE)


def test_backup_count_respected_newest_records_kept(tmp_path):
    records = [rec(i) for i in range(3000)]
    log = RotatingJsonLog(str(tmp_path), max_size_bytes=10_000, max_backups=3)
    write_all(log, records)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["s3slower.log", "s3slower.log.1", "s3slower.log.2", "s3slower.log.3"]
    assert all(p.stat().st_size <= 10_000 for p in tmp_path.iterdir())
    kept = read_back(tmp_path)
    assert kept == [r.to_json_dict() for r in records[-len(kept):]]   # a contiguous tail
    assert log.statistics().rotations > 3


def test_no_backups(tmp_path):
    log = RotatingJsonLog(str(tmp_path), max_size_bytes=5_000, max_backups=0)
    write_all(log, [rec(i) for i in range(200)])
    assert [p.name for p in tmp_path.iterdir()] == ["s3slower.log"]
    assert (tmp_path / "s3slower.log").stat().st_size <= 5_000


def test_oversized_record_gets_a_file_of_its_own(tmp_path):
    big = rec(1, key="k" * 5000)
    log = RotatingJsonLog(str(tmp_path), max_size_bytes=1000, max_backups=10)
    write_all(log, [rec(0), big, rec(2)])
    files = log_files(tmp_path)
    contents = [[json.loads(x)["pid"] for x in p.read_bytes().splitlines()] for p in files]
    assert contents == [[100], [101], [102]]


def test_appends_to_an_existing_log_and_counts_its_size(tmp_path):
    (tmp_path / "s3slower.log").write_bytes(b'{"old":1}\n' * 90)       # 900 bytes
    log = RotatingJsonLog(str(tmp_path), max_size_bytes=1000, max_backups=2)
    write_all(log, [rec(0)])
    assert (tmp_path / "s3slower.log.1").read_bytes() == b'{"old":1}\n' * 90
    assert json.loads((tmp_path / "s3slower.log").read_bytes())["pid"] == 100


def test_close_flushes(tmp_path):
    log = RotatingJsonLog(str(tmp_path), max_size_bytes=10**6, max_backups=1)
    for i in range(50):
        log.write(rec(i))
    log.close()
    assert len(read_back(tmp_path)) == 50
    log.write(rec(99))                               # after close: counted, not written
    assert log.statistics().records_dropped == 1


def test_unwritable_directory_reported_once_and_tracing_goes_on(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")            # fails even for root
    reports: list[str] = []
    log = RotatingJsonLog(str(blocker / "logs"), max_size_bytes=1000, max_backups=2,
                          on_error=reports.append)
    write_all(log, [rec(i) for i in range(100)])
    assert len(reports) == 1 and str(blocker / "logs") in reports[0]
    s = log.statistics()
    assert s.records_failed == 100 and s.records_written == 0 and s.write_errors >= 1
    assert s.last_error


def test_full_disk_reported_once_no_cut_line(tmp_path, monkeypatch):
    real = logfile._write_all
    first_written = threading.Event()

    def disk_fills_up(fd: int, data: bytes) -> None:
        if first_written.is_set():                   # half a batch lands, then ENOSPC
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)
        first_written.set()

    monkeypatch.setattr(logfile, "_write_all", disk_fills_up)
    reports: list[str] = []
    log = RotatingJsonLog(str(tmp_path), max_size_bytes=10**6, max_backups=1,
                          on_error=reports.append)
    log.write(rec(0))
    assert first_written.wait(timeout=10)
    for i in range(1, 300):
        log.write(rec(i))
    log.close()
    s = log.statistics()
    assert len(reports) == 1 and "No space left" in reports[0]
    assert s.records_written == 1 and s.records_failed == 299
    assert read_back(tmp_path) == [rec(0).to_json_dict()]


def test_write_never_blocks_on_a_stuck_disk(tmp_path, monkeypatch):
    release, inside, came_out = threading.Event(), threading.Event(), threading.Event()
    real = logfile._write_all

    def stuck(fd: int, data: bytes) -> None:
        inside.set()
        try:
            assert release.wait(timeout=30)
        finally:
            came_out.set()
        real(fd, data)

    monkeypatch.setattr(logfile, "_write_all", stuck)
    log = RotatingJsonLog(str(tmp_path), max_size_bytes=10**7, max_backups=1,
                          max_queued_records=100)
    log.write(rec(0))
    assert inside.wait(timeout=30)                   # the disk is stuck from here on
    for i in range(1, 20_000):
        log.write(rec(i))
    # every write returned while the disk was still stuck: none waited on it
    # (a blocking write could only have got past the stuck one by its timeout)
    assert not came_out.is_set()
    assert log.statistics().records_dropped >= 20_000 - 100 - logfile.WRITE_BATCH_RECORDS
    release.set()
    log.close(timeout_s=30)
    s = log.statistics()
    assert s.records_written + s.records_dropped == 20_000 and s.records_failed == 0
    assert len(read_back(tmp_path)) == s.records_written


def test_bad_sizes_rejected(tmp_path):
    with pytest.raises(ValueError):
        RotatingJsonLog(str(tmp_path), max_size_bytes=0, max_backups=1)
    with pytest.raises(ValueError):
        RotatingJsonLog(str(tmp_path), max_size_bytes=10, max_backups=-1)
