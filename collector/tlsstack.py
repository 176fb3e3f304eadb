"""Which TLS stack a process speaks through when no probe reads it: a guess.

Sent with the process's announcement (PROCESS `tls_stack`), for the
aggregator's opaque_tls lines (docs/opaque-tls.md): `java` when the
executable is a JVM launcher or libjvm.so is mapped, `rustls` when the
executable or a mapped executable file holds the string "rustls" (a Rust
crate's panic locations and type names stay in .rodata, stripped or not),
else `unknown`.  Reads /proc and files only.  Each file is scanned once per
identity (device, inode, size, mtime), at most SCAN_MAX_BYTES of it; the
answers are kept for at most MAX_FILES files.
"""
from __future__ import annotations

import mmap
import os
from typing import Optional

from s3slower.collector.libraries import mapped_executables

JAVA = "java"
RUSTLS = "rustls"
UNKNOWN = "unknown"
SCAN_MAX_BYTES = 512 * 1024 * 1024     # larger than any library or static binary seen
MAX_FILES = 8192                       # as collector/filecache.py: a host's executables
_RUSTLS = b"rustls"


class StackGuesser:
    def __init__(self) -> None:
        self._files: dict[tuple[int, int, int, int], bool] = {}   # identity -> has rustls

    def guess(self, pid: int) -> str:
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
        files = mapped_executables(pid)
        names = [os.path.basename(p) for p in [exe, *files]]
        if "java" in names or "libjvm.so" in names:
            return JAVA
        if any(self._has_rustls(f"/proc/{pid}/root{p}") for p in files):
            return RUSTLS
        return UNKNOWN

    def _has_rustls(self, path: str) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return False
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        known = self._files.get(ident)
        if known is None:
            known = _scan(path, st.st_size) is True
            if len(self._files) >= MAX_FILES:
                self._files.clear()
            self._files[ident] = known
        return known


def _scan(path: str, size: int) -> Optional[bool]:
    """Whether the file holds the string; None when it cannot be read."""
    if size == 0 or size > SCAN_MAX_BYTES:
        return False
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(_RUSTLS) >= 0
    except (OSError, ValueError):
        return None
