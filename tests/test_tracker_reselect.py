"""Tracker.reselect (config reload in targets mode): a process that stays
selected by the same target keeps its uprobes (no detach, no re-attach, no
window without probes); one no longer selected is released; switching to
tracing everything needs a restart.  Real /proc and real library files; the
BPF side is a recorder of the calls the tracker makes.  And a process gone
before /proc is read is selected by what its exec record said."""
from __future__ import annotations

import os

import pytest

from s3slower.collector.tracker import Tracker
from s3slower.common.targets import Selection


class RecordingProbes:
    def __init__(self):
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        if name not in ("watch_comms", "trace_pid", "untrace_pid", "attach", "detach_pid",
                        "forget_pid"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, *args))

    def for_pid(self, name: str, pid: int) -> list[tuple]:
        return [c for c in self.calls if c[0] == name and pid in c[1:]]


@pytest.fixture
def tracked():
    probes = RecordingProbes()
    me = os.getpid()
    tracker = Tracker(probes, Selection.build(pids=[me]), lambda info, target: None)
    tracker.start()
    assert me in tracker.traced and probes.for_pid("trace_pid", me)
    probes.calls.clear()
    return tracker, probes, me


def test_unchanged_target_keeps_its_probes(tracked):
    tracker, probes, me = tracked
    tracker.reselect(Selection.build(pids=[me]))
    assert me in tracker.traced
    assert not probes.for_pid("detach_pid", me)
    assert not probes.for_pid("attach", me)


def test_no_longer_selected_is_released(tracked):
    tracker, probes, me = tracked
    tracker.reselect(Selection.build(pids=[os.getppid()]))
    assert me not in tracker.traced
    assert probes.for_pid("detach_pid", me) and probes.for_pid("forget_pid", me)


def test_switching_to_everything_needs_a_restart(tracked):
    tracker, _, me = tracked
    with pytest.raises(ValueError, match="restart"):
        tracker.reselect(Selection.build())
    assert me in tracker.traced


def test_a_process_gone_before_proc_is_read_is_announced_from_its_exec_record():
    """A client done in milliseconds (curl) may have exited before the
    collector reads /proc: the exec record's comm and file still select it,
    so its records in flight carry its target's labels."""
    import subprocess
    from s3slower.common.targets import ProcInfo, Target
    gone = subprocess.Popen(["true"])
    gone.wait()
    target = Target("by-exe", "exe_basename", "curl", prom_labels={"client": "curl"})
    announced = []
    probes = RecordingProbes()
    tracker = Tracker(probes, Selection.build(targets=[target]),
                      lambda info, t: announced.append((info.pid, t.id)))
    tracker.on_exec(gone.pid, ProcInfo(gone.pid, "curl", "/usr/bin/curl", ""))
    assert announced == [(gone.pid, "by-exe")]
    tracker.on_exec(gone.pid, ProcInfo(gone.pid, "wget", "/usr/bin/wget", ""))
    tracker.on_exec(gone.pid)
    assert announced == [(gone.pid, "by-exe")], "no target, or nothing the kernel said"
    assert gone.pid not in tracker.traced and not probes.calls


def test_exec_record_names_the_process_it_describes():
    from s3slower.collector.service import _exec_seen
    from s3slower.common.events import Event, Kind, encode_event
    from s3slower.common.targets import ProcInfo
    ev = Event(1, 1, 0, 42, 42, -1, 14, Kind.EXEC, 0, 0, "curl", b"/usr/bin/curl\0", b"")
    assert _exec_seen(encode_event(ev)) == ProcInfo(42, "curl", "/usr/bin/curl", "")
    assert _exec_seen(b"not a record") is None
