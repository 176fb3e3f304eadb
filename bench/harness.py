"""What every bench shares: the figure table, starting the real tracer, RSS,
the kernel's BPF run statistics, the C helper and profiles.

Every process a bench starts is stopped by the bench (context managers), and
every wait has a deadline: a bench that cannot reach its state fails with one
sentence instead of hanging.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from s3slower.collector import bpfsys
from s3slower.collector.bpfsys import PROG_TYPE_KPROBE

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent
S3SLOWER = str(VENV_BIN / "s3slower")
WORK = Path(os.environ.get("S3SLOWER_BENCH_DIR", tempfile.gettempdir())) / "s3slower-bench"
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


class BenchError(RuntimeError):
    """A bench could not reach the state it measures."""


# --------------------------------------------------------------------------
# the one table

@dataclass(frozen=True)
class Figure:
    name: str
    value: Optional[float]
    unit: str
    target: str = ""            # "" when the figure is informational
    met: Optional[bool] = None  # None when there is no target
    note: str = ""


def fmt(v: Optional[float]) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def print_table(figures: list[Figure], out=sys.stdout) -> None:
    rows = [("figure", "value", "target", "met?")]
    for f in figures:
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        rows.append((f.name, f"{fmt(f.value)} {f.unit}".strip(), f.target or "-", met))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    notes = [f for f in figures if f.note]
    if notes:
        print(file=out)
        for f in notes:
            print(f"* {f.name}: {f.note}", file=out)
    out.flush()


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def clean_work_dir() -> None:
    """Drop the previous run's logs and recordings (they can be hundreds of MB)."""
    for pattern in ("*.err", "*.out", "*.rec", "profile-*.txt"):
        for p in WORK.glob(pattern):
            p.unlink()


# --------------------------------------------------------------------------
# processes

def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory line of /proc/PID/status (VmRSS, RssAnon, ...) in MB; 0 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wakeups(pid: int) -> int:
    """Context switches of all a process's threads: each is a wake-up."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if "ctxt_switches:" in line:        # voluntary and not
                    total += int(line.split()[1])
    return total


def children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(name))
    return out


def wait_for(pred, timeout: float, what: str, proc: Optional[subprocess.Popen] = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what}: process exited with {proc.returncode}")
        time.sleep(0.02)
    raise BenchError(f"timed out after {timeout}s waiting for {what}")


def expect_line(gen: subprocess.Popen, prefix: str, timeout: float) -> str:
    """The first line s3bgen prints that starts with prefix (within timeout)."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(gen.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(1.0):
            line = gen.stdout.readline()
            if not line:
                raise BenchError(f"s3bgen exited before {prefix!r}")
            if line.startswith(prefix):
                return line
    raise BenchError(f"s3bgen: no {prefix!r} within {timeout:.0f}s")


def parse_summary(text: str, who: str) -> dict:
    """The JSON of `s3slower <who> stopped: {...}` on stderr ({} when absent)."""
    tag = f"s3slower {who} stopped: "
    for line in reversed(text.splitlines()):
        if line.startswith(tag):
            return json.loads(line[len(tag):])
    return {}


def cli_env() -> dict:
    """The environment the CLI runs in."""
    return dict(os.environ)


class Proc:
    """A started s3slower process whose stderr goes to a file we can read."""

    def __init__(self, args: list[str], name: str, ready_marker: Optional[str],
                 stdout=subprocess.DEVNULL, env: Optional[dict] = None):
        WORK.mkdir(parents=True, exist_ok=True)
        self.err_path = WORK / f"{name}-{os.getpid()}-{time.monotonic_ns()}.err"
        self._err = open(self.err_path, "w")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=stdout, stderr=self._err,
                                     env=env or cli_env())
        self.pid = self.proc.pid
        self.t_ready = None
        if ready_marker:
            wait_for(lambda: ready_marker in self.err_path.read_text(), READY_TIMEOUT_S,
                     f"{name} to print {ready_marker!r}", self.proc)
            self.t_ready = time.monotonic()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def stop(self, sig=signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()
        return self.proc.returncode

    def summary(self, who: str) -> dict:
        return parse_summary(self.stderr, who)


@contextlib.contextmanager
def tracer(args: list[str]) -> Iterator[Proc]:
    """`s3slower run --output none --no-log ARGS` until ready; stopped on exit."""
    p = Proc([S3SLOWER, "run", "--output", "none", "--no-log", *args], "run",
             "s3slower: ready")
    try:
        yield p
    finally:
        p.stop()


def aggregator_pid(run_pid: int) -> int:
    kids = wait_for(lambda: children(run_pid), 10, "the aggregator child")
    return kids[0]


# --------------------------------------------------------------------------
# the kernel's BPF run statistics



@dataclass(frozen=True)
class ProgStat:
    prog_type: int
    run_cnt: int
    run_time_ns: int


@contextlib.contextmanager
def bpf_stats_enabled() -> Iterator[None]:
    path = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = path.read_text().strip()
    path.write_text("1")
    try:
        yield
    finally:
        path.write_text(old)


def fd_run_stats(fd: int) -> tuple[int, int]:
    """(run_cnt, run_time_ns) of a BPF program this process holds as fd."""
    kv = dict(line.split(":", 1) for line in open(f"/proc/self/fdinfo/{fd}").read().splitlines()
              if ":" in line)
    return int(kv["run_cnt"]), int(kv["run_time_ns"])


def prog_stats(pid: int) -> dict[int, ProgStat]:
    """prog_id -> counters of every BPF program the process holds open."""
    out: dict[int, ProgStat] = {}
    d = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(d):
        try:
            with open(f"{d}/{fd}") as f:
                text = f.read()
        except OSError:
            continue
        kv = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if "prog_type" not in kv:       # not a program (a BPF link names one too)
            continue
        out[int(kv["prog_id"])] = ProgStat(int(kv["prog_type"]), int(kv["run_cnt"]),
                                           int(kv["run_time_ns"]))
    return out


@dataclass(frozen=True)
class Hits:
    uprobe_cnt: int
    uprobe_ns: int
    tp_cnt: int
    tp_ns: int


def hits_between(a: dict[int, ProgStat], b: dict[int, ProgStat]) -> Hits:
    up = [0, 0]
    tp = [0, 0]
    for pid_, s in b.items():
        s0 = a.get(pid_, ProgStat(s.prog_type, 0, 0))
        acc = up if s.prog_type == PROG_TYPE_KPROBE else tp
        acc[0] += s.run_cnt - s0.run_cnt
        acc[1] += s.run_time_ns - s0.run_time_ns
    return Hits(up[0], up[1], tp[0], tp[1])


# --------------------------------------------------------------------------
# the C helper (bench/s3bgen.c): its executable name is its comm

def build_helper() -> str:
    src = BENCH_DIR / "s3bgen.c"
    out_dir = WORK / "bin"
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = out_dir / "s3bgen"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        import shutil
        if shutil.which("gcc") is None:
            subprocess.run(["apt-get", "install", "-y", "-q", "gcc"], capture_output=True)
        r = subprocess.run(["gcc", "-O2", "-pthread", "-o", str(exe), str(src)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"cannot build {src}: {r.stderr.strip()[:500]}")
    return str(exe)


def make_cert() -> tuple[str, str]:
    d = WORK / "tls"
    cert, key = d / "cert.pem", d / "key.pem"
    if not cert.exists():
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
    return str(cert), str(key)


# --------------------------------------------------------------------------
# profiles (py-spy, installed into the venv by `python -m bench --setup`)

def py_spy() -> Optional[str]:
    exe = VENV_BIN / "py-spy"
    return str(exe) if exe.exists() else None


def ensure_py_spy() -> Optional[str]:
    if py_spy() is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"],
                       capture_output=True)
    return py_spy()


@contextlib.contextmanager
def profiled(pid: int, name: str, seconds: float) -> Iterator[Path]:
    """Sample `pid` with py-spy for at most `seconds` while the body runs."""
    out = WORK / f"profile-{name}.txt"
    spy = ensure_py_spy()
    p = None
    if spy:
        p = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "200",
                              "--format", "raw", "-d", str(int(seconds) + 1),
                              "-o", str(out)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        yield out
    finally:
        if p is not None:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def _frame(fr: str) -> str:
    """'func (file.py:123)' -> 'func (file.py)': py-spy samples by line; we rank functions."""
    name, sep, where = fr.rpartition(" (")
    if not sep:
        return fr
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})"


def profile_top(path: Path, n: int = 12) -> list[tuple[float, str]]:
    """(share of samples, function) with the most *self* time, from py-spy raw output."""
    counts: dict[str, int] = {}
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        stack, _, cnt = line.rpartition(" ")
        if not stack or not cnt.isdigit():
            continue
        leaf = _frame(stack.split(";")[-1])
        counts[leaf] = counts.get(leaf, 0) + int(cnt)
        total += int(cnt)
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return [(c / total, f) for f, c in top] if total else []


def profile_inclusive(path: Path, n: int = 15) -> list[tuple[float, str]]:
    """(share of samples, function) by *inclusive* time."""
    counts: dict[str, int] = {}
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        stack, _, cnt = line.rpartition(" ")
        if not stack or not cnt.isdigit():
            continue
        total += int(cnt)
        for fr in {_frame(f) for f in stack.split(";")}:
            counts[fr] = counts.get(fr, 0) + int(cnt)
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return [(c / total, f) for f, c in top] if total else []


def _bpf(cmd: int, attr) -> int:
    """bpf(2) as collector/bpfsys issues it; -1 when it is refused."""
    try:
        return bpfsys.bpf(cmd, attr, "bench")
    except (OSError, KeyError):         # KeyError: a machine bpfsys has no call number for
        return -1


def _prog_info_name(prog_id: int) -> str:
    """The (kernel-truncated) name of a loaded program, by its id; "" if unknown."""
    import ctypes
    a = bpfsys.attr()
    struct.pack_into("=I", a, 0, prog_id)           # prog_id, next_id, open_flags
    fd = _bpf(bpfsys.PROG_GET_FD_BY_ID, a)
    if fd < 0:
        return ""
    try:
        buf = ctypes.create_string_buffer(256)      # struct bpf_prog_info's head: name at 64
        try:
            bpfsys.get_info(fd, buf, "program info")
        except OSError:
            return ""
        return buf.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
    finally:
        os.close(fd)


def prog_names(pid: Optional[int] = None) -> dict[int, str]:
    """prog_id -> name.  With pid: every program that process holds, named by
    where it is attached (the tracepoint, from BPF_TASK_FD_QUERY on its perf
    event fds: BCC's TRACEPOINT_PROBE names are all truncated to the same 15
    characters), else by its kernel name (tail-called programs, uprobe links).
    Without pid: bpftool's names of every program, when it is installed."""
    import ctypes
    if pid is None:
        import shutil
        if shutil.which("bpftool") is None:
            return {}
        r = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True)
        try:
            return {p["id"]: p.get("name", "?") for p in json.loads(r.stdout or "[]")}
        except ValueError:
            return {}

    class Query(ctypes.Structure):
        _fields_ = [("pid", ctypes.c_uint32), ("fd", ctypes.c_uint32),
                    ("flags", ctypes.c_uint32), ("buf_len", ctypes.c_uint32),
                    ("buf", ctypes.c_uint64), ("prog_id", ctypes.c_uint32),
                    ("fd_type", ctypes.c_uint32), ("probe_offset", ctypes.c_uint64),
                    ("probe_addr", ctypes.c_uint64)]

    out = {pid_: _prog_info_name(pid_) or str(pid_) for pid_ in prog_stats(pid)}
    buf = ctypes.create_string_buffer(256)
    for fd in os.listdir(f"/proc/{pid}/fd"):
        q = Query(pid, int(fd), 0, 256, ctypes.addressof(buf))
        if _bpf(bpfsys.TASK_FD_QUERY, q) == 0 and q.fd_type == 1:     # BPF_FD_TYPE_TRACEPOINT
            out[q.prog_id] = buf.value.decode(errors="replace")
    return out


@dataclass
class ProgCost:
    """One program's runs over a measurement, per request."""
    name: str
    prog_type: int
    hits: float         # runs a request
    ns: float           # run time a request (bpf_stats)


def program_costs(a: dict[int, ProgStat], b: dict[int, ProgStat], requests: int,
                  names: dict[int, str], idle: Optional[dict[int, tuple[float, float]]] = None,
                  seconds: float = 0.0) -> dict[str, ProgCost]:
    """name -> its runs and run time per request between two prog_stats, less
    what `idle` (prog_id -> runs, ns a second) accounts for in `seconds`."""
    out: dict[str, ProgCost] = {}
    n = max(requests, 1)
    for pid_, s in b.items():
        s0 = a.get(pid_, ProgStat(s.prog_type, 0, 0))
        cnt, ns = s.run_cnt - s0.run_cnt, s.run_time_ns - s0.run_time_ns
        if idle and pid_ in idle:
            cnt = max(cnt - idle[pid_][0] * seconds, 0)
            ns = max(ns - idle[pid_][1] * seconds, 0)
        if not cnt:
            continue
        name = names.get(pid_, str(pid_))
        c = out.setdefault(name, ProgCost(name, s.prog_type, 0.0, 0.0))
        c.hits += cnt / n
        c.ns += ns / n
    return out
