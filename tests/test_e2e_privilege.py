"""The privilege line is the process line: the aggregator runs without root
and cannot load BPF; the collector's socket is not readable by others."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from conftest import need_root_bpf

pytestmark = pytest.mark.e2e


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def test_aggregator_child_is_unprivileged_and_cannot_load_bpf(tracer):
    need_root_bpf()
    (child,) = _children(tracer.proc.pid)
    st = _status(child)
    assert "aggregator" in open(f"/proc/{child}/cmdline").read().replace("\0", " ")
    uids = st["Uid"].split()
    assert all(u != "0" for u in uids), st["Uid"]
    assert all(g != "0" for g in st["Gid"].split()), st["Gid"]
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0
    # a real attempt, with the same identity, to load a BPF program fails
    probe = ("import ctypes, ctypes.util, sys\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "attr = (ctypes.c_ubyte * 128)()\n"
             "attr[0] = 2  # BPF_PROG_TYPE_KPROBE... any tracing type\n"
             "r = libc.syscall(321, 5, ctypes.byref(attr), 128)  # bpf(BPF_PROG_LOAD)\n"
             "print(r, ctypes.get_errno())\n")
    r = subprocess.run(["setpriv", f"--reuid={uids[0]}", f"--regid={st['Gid'].split()[0]}",
                        "--clear-groups", "--inh-caps=-all", sys.executable, "-c", probe],
                       capture_output=True, text=True, timeout=30)
    ret, errno = map(int, r.stdout.split())
    assert ret == -1 and errno in (1, 13), r.stdout   # EPERM / EACCES


def test_collector_socket_not_readable_by_others(tracer):
    need_root_bpf()
    socks = [p for p in os.listdir("/run/s3slower") if p.endswith(".sock")]
    assert socks
    d = os.stat("/run/s3slower")
    assert stat.S_IMODE(d.st_mode) & 0o007 == 0
    for name in socks:
        m = stat.S_IMODE(os.stat(f"/run/s3slower/{name}").st_mode)
        assert m & 0o007 == 0, oct(m)


def test_aggregator_refuses_root_without_user(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to test refusing root")
    r = subprocess.run([sys.executable, "-m", "s3slower", "aggregator", "--connect",
                        "ipc:///nonexistent", "--user", "no-such-user-s3s"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "--allow-root" in r.stderr
