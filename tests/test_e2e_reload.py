"""Hot reload on a running `s3slower run` (SPEC §5): `min_latency_ms` and the
targets take effect without a restart, when their file changes and on SIGHUP.

The SIGHUP case rewrites the files in place with contents of the same length
and puts their modification times back, so the once-a-second polling cannot
see the change (the file's poll stamp is asserted unchanged): only the signal
(which `run` passes on to its aggregator child) can make either half re-read
them.  "Not printed" is checked after a marker request, made later, was
printed (an unanswered request: incomplete, so --min-latency lets it through).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import Tracer, need_root_bpf, readable_dir, wait_until
from s3slower.reload import _stamp
from tls_fixtures import marker_arrives

pytestmark = pytest.mark.e2e


@pytest.fixture
def conf_dir():
    """Where the unprivileged aggregator child can read the files too (pytest's
    tmp_path is under a root-only directory)."""
    with readable_dir("s3slower-reload-") as d:
        yield d


def curl(server) -> int:
    """One plain-HTTP request by a fresh curl process; its pid."""
    url = f"{server.url}/reload-{uuid.uuid4().hex[:8]}?list-type=2"
    proc = subprocess.Popen(["curl", "-s", "-o", "/dev/null", url])
    assert proc.wait(30) == 0
    return proc.pid


def rewrite_unseen(path: Path, old: str, new: str) -> None:
    """Replace `old` by `new` (same length) keeping inode, size and mtime: the
    stamp the reload poll compares (s3slower.reload._stamp) stays the same."""
    assert len(old) == len(new)
    st = path.stat()
    before = _stamp(str(path))
    text = path.read_text()
    assert old in text
    with open(path, "r+") as f:
        f.write(text.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (st.st_ino, st.st_size, st.st_mtime_ns)
    assert _stamp(str(path)) == before is not None


def stderr_has(tracer: Tracer, text: str, what: str) -> None:
    wait_until(lambda: text in tracer.err_path.read_text(), 10, what)


def assert_recorded_now(tracer: Tracer, server) -> None:
    """The next request is printed, and the tracer kept running throughout."""
    pid = curl(server)
    recs = tracer.wait_records({pid}, 1)
    assert [(r["comm"], r["operation"]) for r in recs] == [("curl", "ListObjectsV2")]
    assert tracer.proc.poll() is None


def test_min_latency_reloads_when_the_file_changes(tmp_path, conf_dir, moto_http):
    need_root_bpf()
    config = conf_dir / "s3slower.yaml"
    config.write_text("min_latency_ms: 60000\n")
    tracer = Tracer(tmp_path, ["-C", str(config)])
    try:
        quick = curl(moto_http)
        marker_arrives(tracer)      # printed; quick's record would be ahead of it
        assert not tracer.records_for({quick}), "a request under min_latency_ms was printed"
        config.write_text("min_latency_ms: 0\n")
        stderr_has(tracer, "configuration reloaded: min_latency_ms = 0",
                   "the aggregator to apply the new min_latency_ms")
        assert_recorded_now(tracer, moto_http)
    finally:
        tracer.stop()


def test_sighup_reloads_targets_and_min_latency(tmp_path, conf_dir, moto_http):
    need_root_bpf()
    config = conf_dir / "s3slower.yaml"
    config.write_text("min_latency_ms: 90000\n")
    targets = conf_dir / "targets.yml"
    targets.write_text('targets:\n  - id: c\n    match:\n      type: exe_basename\n'
                       '      value: "nope"\n'
                       '  - id: marker\n    match:\n      type: comm\n'
                       '      value: s3-marker\n')
    marker = conf_dir / "s3-marker"            # the interpreter under a traced name
    marker.symlink_to(os.path.realpath(sys.executable))
    tracer = Tracer(tmp_path, ["-C", str(config), "--targets", str(targets)])
    try:
        untraced = curl(moto_http)
        marker_arrives(tracer, str(marker))    # traced, printed; untraced's would be ahead
        assert not tracer.records_for({untraced})

        rewrite_unseen(config, "min_latency_ms: 90000", "min_latency_ms:     0")
        rewrite_unseen(targets, '"nope"', '"curl"')      # the poll cannot see either

        tracer.proc.send_signal(signal.SIGHUP)
        stderr_has(tracer, "configuration reloaded: targets applied",
                   "the collector to apply the new targets")
        stderr_has(tracer, "configuration reloaded: min_latency_ms = 0",
                   "the aggregator (run's child) to apply the new min_latency_ms")
        assert_recorded_now(tracer, moto_http)
    finally:
        tracer.stop()
