"""Process discovery: who runs, under which name and command line, in which cgroup.

Reads /proc only; decides nothing about HTTP, nor which container a cgroup
path names (the aggregator does: aggregator/containers.py).  TLS libraries
are found by collector/libraries.py.
"""
from __future__ import annotations

import os
from typing import Iterator, Optional

from s3slower.common.targets import ProcInfo


def proc_info(pid: int) -> Optional[ProcInfo]:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            comm = f.read().strip().decode("utf-8", "replace")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read(4096).replace(b"\0", b" ").strip().decode("utf-8", "replace")
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
    except OSError:
        return None  # exited, or a kernel thread we cannot read
    return ProcInfo(pid, comm, exe, cmdline)


def placement(pid: int) -> Optional[tuple[str, int]]:
    """(cgroup path, pid in the process's own pid namespace); None once it is gone.

    The path is the cgroup v2 one ("0::" line); on a v1 or hybrid host whose
    v2 line is the root, the first v1 line placing it lower (name=systemd
    first).  The namespace pid is the last NSpid of its status ("1" for a
    container's init); 0 when the kernel shows none."""
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            lines = f.read(8192).decode("utf-8", "replace").splitlines()
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read(8192)
    except OSError:
        return None
    paths = [line.split(":", 2) for line in lines if line.count(":") >= 2]
    paths.sort(key=lambda p: (p[0] != "0", "name=systemd" not in p[1]))   # stable
    path = next((p[2] for p in paths if p[2] != "/"), "/" if paths else "")
    nspid = next((line.split()[-1] for line in status.splitlines()
                  if line.startswith(b"NSpid:")), b"0")
    return path, int(nspid) if nspid.isdigit() else 0


def all_pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)
