"""Process discovery: who runs, what it maps, which TLS libraries to probe.

Reads /proc only; decides nothing about HTTP.  Library families are found by
file name in /proc/PID/maps.
"""
from __future__ import annotations

import os
import re
from typing import Iterator, Optional

from s3slower.common.targets import ProcInfo

LIBRARY_PATTERNS = (
    ("openssl", re.compile(r"/libssl\.so(\.[0-9.]+)?$")),
)


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


def mapped_libraries(pid: int) -> set[tuple[str, str]]:
    """(family, path) of every known TLS library mapped by pid."""
    found: set[tuple[str, str]] = set()
    try:
        with open(f"/proc/{pid}/maps", "r", errors="replace") as f:
            for line in f:
                path = line.rstrip("\n").split(None, 5)[-1] if line.count(" ") >= 5 else ""
                if not path.startswith("/"):
                    continue
                for family, pat in LIBRARY_PATTERNS:
                    if pat.search(path):
                        # one inode, one probe: /lib and /usr/lib are often the same
                        found.add((family, os.path.realpath(path)))
    except OSError:
        pass
    return found


def system_libraries() -> set[tuple[str, str]]:
    """TLS libraries installed where the dynamic linker finds them."""
    found: set[tuple[str, str]] = set()
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
              "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu", "/lib64"):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            path = os.path.realpath(os.path.join(d, name))
            for family, pat in LIBRARY_PATTERNS:
                if pat.search("/" + name) and os.path.isfile(path):
                    found.add((family, path))
    return found
