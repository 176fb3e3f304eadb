"""Cold attach: from a process mapping a TLS-bearing file the collector has
never seen to its probes being in place, by file size.  Target: <= 200 ms
for any file up to 100 MB (issue "Every client, cold or warm": pyarrow's
first S3 requests came 1.2 s after its import and were lost while the 48 MB
libarrow.so was inspected).

Files: the system's libssl.so.3, pyarrow's libarrow.so (OpenSSL compiled in,
local symbols; tests/setup-test-tools.sh installs pyarrow) and a synthetic
~100 MB shared object built here with gcc (OpenSSL's four I/O functions
exported among 4,000 others, padded with a read-only section).  Each round
copies the file to a new path (a new inode: in no cache file, unseen by the
collector), first while `s3slower run` traces everything, then while it
traces one name (--watch: probes per process).  A fresh process (its
dependencies loaded, the collector idle) takes a monotonic timestamp,
dlopen()s the copy and reads the first byte of each probed function in its
own memory: the kernel writes a breakpoint (int3, 0xCC) there when a uprobe
is registered, so "every one reads 0xCC" is "probes attached" as the kernel
has it, on the same clock; and the bench sees the collector's uprobe_multi
links on the file in its fdinfo (another tracer on the host may have put
breakpoints there first).  The figure is the worst round, dlopen's own time
included (mapping the file is its first step).

    python -m bench coldattach
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from bench.harness import WORK, BenchError, Figure, log, tracer
from s3slower.collector import uprobe_links
from s3slower.collector.libraries import LibraryFinder

TARGET_MS = 200.0
ROUNDS = 3
SYNTHETIC_PAD = 99_500_000            # bytes: the file is ~100 MB with its code
LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
ATTACH_WAIT_S = 10.0
WATCHED_COMM = "s3bcold"

# argv: file, probed virtual addresses (hex, comma-separated), seconds to
# wait.  Prints "ready", waits for a line on stdin, then one JSON line (t0
# and breakpoints: monotonic times; breakpoints null when none came).
MAPPER = r"""
import ctypes, json, sys, time
for dep in ("libstdc++.so.6", "libgcc_s.so.1", "libm.so.6"):
    ctypes.CDLL(dep)
path, vaddrs = sys.argv[1], [int(a, 16) for a in sys.argv[2].split(",")]
print("ready", flush=True)
sys.stdin.readline()
t0 = time.monotonic()
lib = ctypes.CDLL(path)
t1 = time.monotonic()
base = ctypes.c_uint64.from_address(lib._handle).value     # link_map.l_addr
code = [ctypes.c_ubyte.from_address(base + a) for a in vaddrs]
attached = None
while time.monotonic() < t0 + float(sys.argv[3]):
    if all(b.value == 0xCC for b in code):
        attached = time.monotonic()
        break
    time.sleep(0.001)
print(json.dumps({"t0": t0, "dlopen_ms": (t1 - t0) * 1000, "breakpoints": attached}))
"""

SYNTHETIC_C = r"""
#define F(n) int fn_##n(int x) { return x * n + 1; }
#define T(n) F(n##0) F(n##1) F(n##2) F(n##3) F(n##4) F(n##5) F(n##6) F(n##7) F(n##8) F(n##9)
#define H(n) T(n##0) T(n##1) T(n##2) T(n##3) T(n##4) T(n##5) T(n##6) T(n##7) T(n##8) T(n##9)
#define K(n) H(n##0) H(n##1) H(n##2) H(n##3) H(n##4) H(n##5) H(n##6) H(n##7) H(n##8) H(n##9)
K(1) K(2) K(3) K(4)
__attribute__((used, section(".s3s_pad"))) static const unsigned char pad[PAD_BYTES] = {1};
static volatile int sink;
int SSL_write(void *ssl, const void *buf, int num) { sink = num; return num; }
int SSL_read(void *ssl, void *buf, int num) { sink = num; return num; }
int SSL_write_ex(void *ssl, const void *buf, unsigned long num, unsigned long *written)
{ *written = num; return 1; }
int SSL_read_ex(void *ssl, void *buf, unsigned long num, unsigned long *readbytes)
{ *readbytes = num; return 1; }
"""


def synthetic_library() -> Path:
    """A ~100 MB shared object with OpenSSL's I/O functions (built once)."""
    out_dir = WORK / "bin"
    out_dir.mkdir(parents=True, exist_ok=True)
    src, so = out_dir / "s3s_big_tls.c", out_dir / "libs3s_big_tls.so"
    text = f"#define PAD_BYTES {SYNTHETIC_PAD}\n{SYNTHETIC_C}"
    if not so.exists() or not src.exists() or src.read_text() != text:
        if shutil.which("gcc") is None:
            raise BenchError("gcc is missing (packaging/setup-host.sh --test installs it)")
        src.write_text(text)
        r = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(so), str(src)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"cannot build {so.name}: {r.stderr.strip()[:500]}")
    return so


def libarrow() -> Path:
    spec = importlib.util.find_spec("pyarrow")
    found = sorted(Path(spec.origin).parent.glob("libarrow.so.*")) if spec else []
    if not found:
        raise BenchError("pyarrow is missing: tests/setup-test-tools.sh installs it")
    return min(found, key=lambda p: len(p.name))


def probed(path: Path) -> tuple[list[int], int]:
    """The virtual addresses where the collector puts its entry probes, and
    how many uprobe_multi links it makes for the file (one per BPF program)."""
    lib = LibraryFinder().for_file(str(path))
    if lib is None:
        raise BenchError(f"{path}: no TLS functions found in it")
    return sorted({p.addr for p in lib.points if not p.ret}), len({(p.fn, p.ret)
                                                                  for p in lib.points})


def links_on(pid: int, path: str) -> int:
    """uprobe_multi links process pid holds on path (its fds' fdinfo names it)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                n += f"path:\t{path}\n" in f.read()
        except OSError:
            continue
    return n


def one_round(python: str, collector: int, original: Path, points: tuple[list[int], int],
              n: int) -> dict:
    """Copy the file to a new path, let a new process dlopen it: its figures.
    Attached is when the mapper saw every breakpoint and this collector held
    every link, whichever is later: another tracer on the host could have
    put the breakpoints in first."""
    d = WORK / "cold" / f"{os.getpid()}-{n}"
    d.mkdir(parents=True, exist_ok=True)
    copy = d / original.name
    shutil.copyfile(original, copy)
    try:
        vaddrs, links = points
        p = subprocess.Popen([python, "-c", MAPPER, str(copy),
                              ",".join(f"{a:x}" for a in vaddrs), str(ATTACH_WAIT_S)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            if p.stdout.readline().strip() != "ready":
                raise BenchError("the mapping process did not start")
            _settle()
            p.stdin.write("go\n")
            p.stdin.flush()
            linked = _linked(collector, str(copy), links)
            out = json.loads(p.stdout.readline())
        finally:
            p.kill()
            p.wait(10)
    finally:
        shutil.rmtree(d)
    done = None if None in (linked, out["breakpoints"]) else max(linked, out["breakpoints"])
    return {"dlopen_ms": out["dlopen_ms"],
            "attached_ms": None if done is None else (done - out["t0"]) * 1000}


def _linked(collector: int, path: str, links: int) -> Optional[float]:
    """When the collector held all its links on path (polled every 2 ms);
    now, where the kernel has no uprobe_multi links (perf-event uprobes)."""
    if not uprobe_links.supported():
        return time.monotonic()
    deadline = time.monotonic() + ATTACH_WAIT_S
    while time.monotonic() < deadline:
        if links_on(collector, path) >= links:
            return time.monotonic()
        time.sleep(0.002)
    return None


def _settle() -> None:
    """Let the collector finish with the new process's exec and startup maps
    (its interpreter's files, known or not) before the mapping is timed."""
    time.sleep(1.0)


def watched_python() -> str:
    """The interpreter under a name --watch can trace (its comm is the name)."""
    link = WORK / "bin" / WATCHED_COMM
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(os.path.realpath(sys.executable))
    return str(link)


def run(quick: bool = False) -> list[Figure]:
    files = [Path(LIBSSL), libarrow(), synthetic_library()]
    points = {f: probed(f) for f in files}
    rounds = 1 if quick else ROUNDS
    figures = []
    for mode, args, python in (("trace all", [], sys.executable),
                               ("--watch", ["--watch", WATCHED_COMM], watched_python())):
        with tracer(args) as t:
            for f in files:
                got = [one_round(python, t.pid, f, points[f], i) for i in range(rounds)]
                figures.append(_figure(mode, f, got))
    return figures


def _figure(mode: str, f: Path, got: list[dict]) -> Figure:
    attached = [g["attached_ms"] for g in got]
    mb = f.stat().st_size / 1e6
    log(f"coldattach {mode}, {f.name} ({mb:.1f} MB): attached "
        f"{[a if a is None else round(a, 1) for a in attached]} ms, "
        f"dlopen {[round(g['dlopen_ms'], 1) for g in got]} ms")
    worst = None if None in attached else max(attached)
    return Figure(f"cold attach: mmap -> probes attached, {f.name} ({mb:.0f} MB, {mode}, "
                  f"worst of {len(got)})", worst, "ms", f"<= {TARGET_MS:g} ms",
                  worst is not None and worst <= TARGET_MS,
                  note="" if worst is not None else
                  f"not attached within {ATTACH_WAIT_S:g} s in some round")
