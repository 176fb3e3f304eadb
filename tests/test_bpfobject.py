"""The BPF program is compiled once and loaded from the kept object after
(collector/bpfobject.py): the object round-trips, runs, is trusted only as
root's own file, and the collector's own pid is a map entry, not a flag."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3slower.collector import bpfobject, hostprep
from s3slower.collector.probes import Probes, ProgramOptions
from s3slower.common import events

pytestmark = pytest.mark.e2e

SOURCE = r"""
struct st { u64 n; };
BPF_HASH(counts, u32, u64, 16);
BPF_ARRAY(who, u32, 1);
BPF_TASK_STORAGE(per_task, struct st);      /* a map the kernel makes only with BTF */
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 zero = 0;
    u32 *me = who.lookup(&zero);
    if (!me || *me != (bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct st *s = per_task.task_storage_get(bpf_get_current_task_btf(), 0,
                                             BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!s)
        return 0;
    s->n++;
    u64 n = s->n;
    counts.update(&zero, &n);
    return 0;
}
"""


@pytest.fixture(scope="module", autouse=True)
def _headers():
    hostprep.prepare()


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src" / "small.bpf.c"
    src.parent.mkdir()
    src.write_text(SOURCE)
    return src


def _cached(src: Path, cache: Path, cflags=("-DX=1",)) -> tuple[bpfobject.Compiled, bool]:
    compiled = []
    obj = bpfobject.cached(src, list(cflags), cache, on_compile=lambda: compiled.append(1))
    return obj, bool(compiled)


def test_compiled_once_then_loaded_from_the_kept_object_and_it_runs(tmp_path):
    src, cache = _source(tmp_path), tmp_path / "cache"
    first, compiled = _cached(src, cache)
    assert compiled
    [kept] = cache.glob("*.json")
    assert kept.stat().st_mode & 0o777 == 0o600
    again, compiled = _cached(src, cache)
    assert not compiled and again.dumps() == first.dumps()

    loaded = bpfobject.Loaded(again)
    try:
        loaded["who"][ctypes.c_int(0)] = ctypes.c_uint32(os.getpid())
        fd = loaded.load("tracepoint__syscalls__sys_enter_getppid", 5)
        loaded.attach_tracepoint(fd, "syscalls", "sys_enter_getppid")
        for _ in range(5):
            os.getppid()
        assert loaded["counts"][ctypes.c_uint32(0)].value == 5
        assert [k.value for k in loaded["counts"].keys()] == [0]
    finally:
        for perf in loaded.tracepoint_fds:
            os.close(perf)
        loaded.close()


def test_a_changed_flag_or_source_is_compiled_anew(tmp_path):
    src, cache = _source(tmp_path), tmp_path / "cache"
    _cached(src, cache)
    assert _cached(src, cache, ("-DX=2",))[1]
    src.write_text(SOURCE + "\n/* changed */\n")
    assert _cached(src, cache)[1]
    assert len(list(cache.glob("*.json"))) == 3


@pytest.mark.parametrize("spoil", ["group-writable", "world-writable", "not root's",
                                   "a symlink", "not an object"])
def test_an_object_anyone_else_could_have_written_is_never_loaded(tmp_path, spoil):
    src, cache = _source(tmp_path), tmp_path / "cache"
    good, _ = _cached(src, cache)
    [kept] = cache.glob("*.json")
    if spoil == "group-writable":
        kept.chmod(0o620)
    elif spoil == "world-writable":
        kept.chmod(0o602)
    elif spoil == "not root's":
        os.chown(kept, 65534, 65534)
    elif spoil == "a symlink":
        other = tmp_path / "elsewhere.json"
        kept.rename(other)
        kept.symlink_to(other)
    else:
        kept.write_bytes(b'{"format": 1, "programs": 7}')
    obj, compiled = _cached(src, cache)
    assert compiled and obj.dumps() == good.dumps()
    assert not kept.is_symlink() and kept.stat().st_uid == 0
    assert kept.stat().st_mode & 0o777 == 0o600


def test_the_collectors_own_traffic_is_not_traced_but_a_childs_is(tmp_path):
    """self_pid was a compile flag (-DSELF_PID) and is now a map entry."""
    records: list[bytes] = []
    server = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=tmp_path)
    try:
        port = int(server.stdout.readline().split("port ")[1].split()[0])
        probes = Probes(ProgramOptions(trace_all=True, self_pid=os.getpid()), records.append)
        try:
            import urllib.request
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            child = subprocess.Popen(["curl", "-s", "-o", "/dev/null",
                                      f"http://127.0.0.1:{port}/"])
            assert child.wait(10) == 0
            deadline = time.monotonic() + 5
            pids: set[int] = set()
            while time.monotonic() < deadline and child.pid not in pids:
                probes.consume()
                pids = {events.peek_pid(r) for r in records}
                time.sleep(0.05)
        finally:
            probes.close()
    finally:
        server.kill()
        server.wait()
    assert child.pid in pids              # curl's side: a child of the "collector"
    assert os.getpid() not in pids        # this process is the "collector"
