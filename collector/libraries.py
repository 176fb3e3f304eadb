"""TLS library discovery: which files a process maps, and where to probe them.

A process's TLS code is found in the files it maps executable
(/proc/PID/maps), three ways:
  * by file name: libssl.so* (OpenSSL), libgnutls.so* (GnuTLS), libnspr4.so
    (NSS's I/O functions), libs2n.so* (s2n);
  * by symbol, in any other mapped file: OpenSSL/BoringSSL (`SSL_write`,
    `SSL_read`, ...), s2n (`s2n_send`/`s2n_recv`) or GnuTLS compiled into an
    executable or a bundled extension (node, a self-contained `_ssl`,
    `_awscrt`), exported (.dynsym) or local (.symtab);
  * Go programs, stripped or not, through `.gopclntab` (collector/golang.py).
A function whose first instruction the kernel cannot uprobe gets its probes
moved (collector/x86entry.py).

Invariants: reads files and /proc only, never attaches anything; every
answer is a `Library` whose probe points are virtual addresses in the file;
results are cached per file identity (device, inode, size, mtime), so a file
is parsed once however many processes map it (and, given a cache file, once
across restarts); the caches are bounded.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from s3slower.collector import filecache, golang, x86entry
from s3slower.collector.elfsyms import Symbols
from s3slower.collector.processes import all_pids
from s3slower.common.losses import Loss
from s3slower.reasons import note

# (symbol, BPF entry function, BPF return function) per library family.
OPENSSL_PROBES = (
    ("SSL_write", "ssl_write_enter", "ssl_write_return"),
    ("SSL_read", "ssl_read_enter", "ssl_read_return"),
    ("SSL_write_ex", "ssl_write_ex_enter", "ssl_write_ex_return"),
    ("SSL_read_ex", "ssl_read_ex_enter", "ssl_read_ex_return"),
)
GNUTLS_PROBES = (
    ("gnutls_record_send", "gnutls_send_enter", "gnutls_send_return"),
    ("gnutls_record_recv", "gnutls_recv_enter", "gnutls_recv_return"),
)
NSS_PROBES = (
    ("PR_Write", "pr_write_enter", "pr_write_return"),
    ("PR_Read", "pr_read_enter", "pr_read_return"),
    ("PR_Send", "pr_send_enter", "pr_send_return"),
    ("PR_Recv", "pr_recv_enter", "pr_recv_return"),
)
S2N_PROBES = (
    ("s2n_send", "s2n_send_enter", "s2n_send_return"),
    ("s2n_recv", "s2n_recv_enter", "s2n_recv_return"),
)
LIBRARY_PROBES = {"openssl": OPENSSL_PROBES, "gnutls": GNUTLS_PROBES,
                  "nss": NSS_PROBES, "s2n": S2N_PROBES}
GO_PROBES = {"write": ("go_write_enter", "go_write_return"),
             "read": ("go_read_enter", "go_read_return")}

NAME_FAMILIES = (
    ("openssl", re.compile(r"/libssl\.so(\.[0-9.]+)?$")),
    ("gnutls", re.compile(r"/libgnutls\.so(\.[0-9.]+)?$")),
    ("nss", re.compile(r"/libnspr4\.so(\.[0-9.]+)?$")),
    ("s2n", re.compile(r"/libs2n\.so(\.[0-9.]+)?$")),
)
# Families looked for by symbol inside other files, in this order.
EMBEDDED_FAMILIES = ("openssl", "s2n", "gnutls")
# Files parsed per collector lifetime before the cache starts over: far more
# distinct executables and libraries than a host runs, small per entry.
MAX_CACHED_FILES = 8192
SYSTEM_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
                   "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib")


@dataclass(frozen=True)
class ProbePoint:
    addr: int          # virtual address in the file
    fn: str            # BPF function to run there
    ret: bool          # a uretprobe (never for Go code)
    offset: int = -1   # where the kernel probes: the file offset of addr


@dataclass(frozen=True)
class Library:
    family: str        # openssl | gnutls | nss | s2n | go
    path: str
    points: tuple[ProbePoint, ...]


class LibraryFinder:
    """Find and cache the TLS probe points of files and processes; with a
    cache_file, what was learned is kept across restarts (collector/filecache.py)."""

    def __init__(self, cache_file: Optional[Path] = None) -> None:
        self._cache: dict[filecache.Ident, Optional[Library]] = {}
        self.parse_errors = 0          # files that looked like ELF but did not parse
        self._cache_file = cache_file
        self._digest = filecache.inspector_digest() if cache_file else ""
        self._known = filecache.load(cache_file, self._digest) if cache_file else {}
        self._unsaved = False

    def for_pid(self, pid: int) -> Iterator[Library]:
        """The TLS files pid maps, each yielded once inspected, so that its
        probes can go in before the next file is read (the newest mappings
        come first in practice: mmap places them below the older ones)."""
        for path in mapped_executables(pid):
            lib = self.for_file(path, pid)
            if lib is not None:
                yield lib

    def for_file(self, path: str, pid: int = 0) -> Optional[Library]:
        real = _reachable(path, pid)
        if real is None:
            return None
        try:
            st = os.stat(real)
        except OSError:
            return None
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if ident in self._cache:
            lib = self._cache[ident]
        elif ident in self._known:
            entry = self._known[ident]
            lib = entry and Library(entry[0], real, tuple(ProbePoint(*p) for p in entry[1]))
            self._remember(ident, lib)
        else:
            lib = self._inspect(real)
            self._remember(ident, lib)
            self._unsaved = self._cache_file is not None
        # the same file reached another way (another mount namespace's path)
        return lib if lib is None or lib.path == real else replace(lib, path=real)

    def _remember(self, ident: filecache.Ident, lib: Optional[Library]) -> None:
        if len(self._cache) >= MAX_CACHED_FILES:
            self._cache.clear()
        self._cache[ident] = lib

    def save(self) -> None:
        """Keep what was learned since the last save (nothing to do without
        a cache_file or anything new)."""
        if not self._unsaved:
            return
        for ident, lib in self._cache.items():
            self._known[ident] = lib and (lib.family, tuple((p.addr, p.fn, p.ret, p.offset)
                                                            for p in lib.points))
        filecache.save(self._cache_file, self._digest, self._known)
        self._unsaved = False

    def warm(self) -> None:
        """Inspect what every running process maps and the system's TLS
        libraries now, so that later answers come from the cache."""
        self.system_libraries()
        for pid in all_pids():
            for _lib in self.for_pid(pid):
                pass

    def system_libraries(self) -> list[Library]:
        """Named TLS libraries where the dynamic linker finds them."""
        found: dict[str, Library] = {}
        for d in SYSTEM_LIB_DIRS:
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                if any(pat.search("/" + name) for _f, pat in NAME_FAMILIES):
                    real = os.path.realpath(os.path.join(d, name))
                    if real not in found and os.path.isfile(real):
                        lib = self.for_file(real)
                        if lib is not None:
                            found[real] = lib
        return list(found.values())

    @property
    def cached_files(self) -> int:
        return len(self._cache)

    def _inspect(self, path: str) -> Optional[Library]:
        try:
            with open(path, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    return None
                f.seek(0)
                syms = Symbols(ELFFile(f))
                lib = _find_library(syms, f, path)
                return _at_file_offsets(syms, lib) if lib else None
        except OSError:
            return None
        except (ELFError, struct.error, golang.GoBinaryError, ValueError) as exc:
            self.parse_errors += 1
            note(Loss.ELF_PARSE, f"{path}: {type(exc).__name__}: {exc}")
            return None
        return None


def mapped_executables(pid: int) -> list[str]:
    """Paths of the files pid maps executable, in map order, without repeats."""
    out: dict[str, None] = {}
    try:
        with open(f"/proc/{pid}/maps", "r", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(None, 5)
                if len(parts) == 6 and "x" in parts[1] and parts[5].startswith("/") \
                        and not parts[5].endswith(" (deleted)"):
                    out[parts[5]] = None
    except OSError:
        pass
    return list(out)


def _reachable(path: str, pid: int) -> Optional[str]:
    """The path as this (host) process can open it: through /proc/PID/root when
    the process lives in another mount namespace."""
    if pid and os.path.exists(f"/proc/{pid}/root{path}"):
        host = os.path.realpath(path)
        inner = f"/proc/{pid}/root{path}"
        try:
            if os.path.samefile(host, inner):
                return host
        except OSError:
            pass
        return inner
    return os.path.realpath(path) if os.path.exists(path) else None


def _find_library(syms: Symbols, f, path: str) -> Optional[Library]:
    named = next((fam for fam, pat in NAME_FAMILIES if pat.search(path)), None)
    if named:
        return _symbol_library(syms, named, path, local=False)
    for family in EMBEDDED_FAMILIES:
        lib = _symbol_library(syms, family, path, local=False)
        if lib:
            return lib
    if golang.is_go(syms.sections()):
        return _go_library(f, path)
    for family in EMBEDDED_FAMILIES:
        lib = _symbol_library(syms, family, path, local=True)
        if lib:
            return lib
    return None


def _at_file_offsets(syms: Symbols, lib: Library) -> Optional[Library]:
    """The kernel probes file offsets: each point's, from its loadable segment
    (points outside every segment are dropped, as the kernel would refuse them)."""
    points = tuple(replace(pt, offset=pt.addr - lo + off) for pt in lib.points
                   for lo, size, off in syms.loadable() if lo <= pt.addr < lo + size)
    return replace(lib, points=points) if points else None


def _symbol_library(syms: Symbols, family: str, path: str,
                    local: bool) -> Optional[Library]:
    specs = LIBRARY_PROBES[family]
    addrs = syms.functions([s for s, _e, _r in specs], local)
    if not _complete(family, addrs):
        return None
    points = []
    for sym, enter, ret in specs:
        if sym in addrs:
            points += _function_points(syms, *addrs[sym], enter, ret)
    return Library(family, path, tuple(points)) if points else None


def _function_points(syms: Symbols, addr: int, size: int, enter: str,
                     ret: str) -> list[ProbePoint]:
    """Entry uprobe + uretprobe, or moved probes when the entry instruction is
    one the kernel cannot probe (collector/x86entry.py)."""
    if syms.elf["e_machine"] != "EM_X86_64":
        return [ProbePoint(addr, enter, False), ProbePoint(addr, ret, True)]
    code = syms.code_at(addr, max(size, 16))
    if code is None or not x86entry.needs_moving(code):
        return [ProbePoint(addr, enter, False), ProbePoint(addr, ret, True)]
    moved = x86entry.move_probes(code[:size], addr) if size else None
    if moved is None:
        return []
    return [ProbePoint(moved.entry, enter, False)] + [ProbePoint(a, ret, False)
                                                       for a in moved.rets]


def _complete(family: str, addrs: dict) -> bool:
    """A family is present when it has a way to write and a way to read."""
    specs = LIBRARY_PROBES[family]
    writes = [s for s, e, _r in specs if "write" in e or "send" in e]
    reads = [s for s, e, _r in specs if "read" in e or "recv" in e]
    return any(s in addrs for s in writes) and any(s in addrs for s in reads)


def _go_library(f, path: str) -> Optional[Library]:
    tls = golang.find_go_tls(f)
    if tls is None:
        return None
    points = []
    for fn, (enter, ret) in ((tls.write, GO_PROBES["write"]), (tls.read, GO_PROBES["read"])):
        points.append(ProbePoint(fn.entry, enter, False))
        points += [ProbePoint(a, ret, False) for a in fn.rets]
    return Library("go", path, tuple(points))
