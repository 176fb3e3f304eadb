"""Process discovery: who runs, under which name and command line.

Reads /proc only; decides nothing about HTTP.  TLS libraries are found by
collector/libraries.py.
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


def all_pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)
