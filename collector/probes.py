"""The BPF program: load it, attach uprobes, drain its ring buffer, read its maps.

The program is compiled once and kept (collector/bpfobject.py); this module
makes its maps, loads and attaches its programs.  Filters are compile-time
`-D` flags or map entries, never edits of the C text.  Every uprobe attached
is remembered exactly ((path, pid) -> probe points and their fds), so
detaching a process undoes what was done for it and nothing else.  Uprobes
are uprobe_multi links where the kernel has them (collector/uprobe_links.py),
perf-event uprobes elsewhere.
"""
from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from s3slower import bpf as bpf_src
from s3slower.collector import bpfobject, uprobe_links
from s3slower.collector.bpfsys import PROG_TYPE_KPROBE, PROG_TYPE_TRACEPOINT
from s3slower.collector.libraries import Library, ProbePoint
from s3slower.common.events import COMM_LEN, KERNEL_LOSS_SLOTS
from s3slower.common.losses import Loss
from s3slower.reasons import note

# the hash maps (the task-local `threads` cannot be listed; it dies with its thread)
MAP_NAMES = ("conns", "ssl_fds", "traced_pids", "active_go", "go_pids", "seen_pids")
DEFAULT_RINGBUF_PAGES = 2048  # 8 MiB, see RINGBUF_PAGES in the C source
# Programs that others tail-call (their code verified once): the program
# array that holds each, the function, tracepoint or uprobe type.
SHARED_PROGRAMS = (("io_exits", "io_exit_tp", "tp"), ("frame_tp", "frame_head_tp", "tp"),
                   ("tls_exits", "tls_exit_up", "up"), ("frame_up", "frame_head_up", "up"),
                   ("go_sends", "go_send_tp", "tp"))
TRACEPOINT_PREFIX = "tracepoint__"      # tracepoint__CATEGORY__EVENT, as BCC names them
LOADERS = 4                 # programs verified side by side (the kernel runs each on one core)


class ProbeError(RuntimeError):
    """The BPF program could not be compiled, loaded or attached."""


@dataclass(frozen=True)
class ProgramOptions:
    trace_all: bool = True
    self_pid: int = 0
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES
    cache_dir: Path = bpfobject.CACHE_DIR


class Probes:
    def __init__(self, opts: ProgramOptions, on_record: Callable[[bytes], None]):
        try:
            import bcc  # noqa: F401  distribution package python3-bpfcc
        except ImportError as exc:
            raise ProbeError("BCC is not importable: install python3-bpfcc "
                             "(never the PyPI package 'bcc')") from exc
        cflags = [f"-I{bpf_src.DIR}", f"-DRINGBUF_PAGES={opts.ringbuf_pages}"]
        if opts.trace_all:
            cflags.append("-DTRACE_ALL")
        try:
            self.obj = bpfobject.Loaded(bpfobject.cached(bpf_src.PROGRAM, cflags, opts.cache_dir))
        except (bpfobject.ObjectError, OSError) as exc:
            raise ProbeError(f"cannot load the BPF program: {exc}") from exc
        # (path, pid) -> the probe points attached there, and their fds
        self.attached: dict[tuple[str, int], tuple[ProbePoint, ...]] = {}
        self._probe_fds: dict[tuple[str, int], list[int]] = {}
        self.attach_errors = 0
        self.detach_errors = 0
        self.obj["self_pid"][ctypes.c_int(0)] = ctypes.c_uint32(opts.self_pid)
        self.obj.open_ring_buffer("events", on_record)
        self._links = uprobe_links.supported()
        self._uprobe_type = uprobe_links.BPF_TRACE_UPROBE_MULTI if self._links else 0
        tracepoints = [n for n in self.obj.program_names if n.startswith(TRACEPOINT_PREFIX)]
        # The verifier takes 0.1-0.7 s over each of the big shared programs
        # (the syscall runs without the GIL): side by side, on every core.
        loads = [(fn, PROG_TYPE_TRACEPOINT if kind == "tp" else PROG_TYPE_KPROBE,
                  0 if kind == "tp" else self._uprobe_type) for _, fn, kind in SHARED_PROGRAMS]
        loads += [(fn, PROG_TYPE_TRACEPOINT, 0) for fn in tracepoints]
        try:
            with ThreadPoolExecutor(LOADERS) as pool:
                fds = list(pool.map(lambda job: self.obj.load(*job), loads))
            for (array, _, _), fd in zip(SHARED_PROGRAMS, fds):
                self.obj[array][ctypes.c_int(0)] = ctypes.c_int(fd)
            for fn, fd in zip(tracepoints, fds[len(SHARED_PROGRAMS):]):
                self.obj.attach_tracepoint(fd, *fn[len(TRACEPOINT_PREFIX):].split("__", 1))
        except (bpfobject.ObjectError, OSError) as exc:
            self.close()
            raise ProbeError(f"cannot load the BPF program: {exc}") from exc

    # -- draining ----------------------------------------------------------
    def fileno(self) -> int:
        """The ring buffer's fd: readable while records wait to be drained."""
        return self.obj["events"].fd

    def consume(self) -> None:
        """Drain every record there is now (on_record for each), without waiting."""
        self.obj.consume()

    # -- uprobes -----------------------------------------------------------
    def attach(self, lib: Library, pid: int = -1) -> int:
        """Attach a library's probe points (all processes when pid=-1)."""
        key = (lib.path, pid)
        if key in self.attached:
            return 0
        attach = self._attach_linked if self._links else self._attach_each
        done, self._probe_fds[key] = attach(lib, pid)
        self.attached[key] = tuple(done)
        return len(done)

    def _program(self, fn: str, lib: Library, count: int) -> Optional[int]:
        try:
            return self.obj.load(fn, PROG_TYPE_KPROBE, self._uprobe_type)
        except bpfobject.ObjectError as exc:
            self.attach_errors += count
            note(Loss.ATTACH, f"cannot load {fn} for {lib.path}: {exc}", count)
            return None

    def _attach_linked(self, lib: Library, pid: int) -> tuple[list[ProbePoint], list[int]]:
        """One link per (BPF function, entry or return); a link the kernel
        refuses is tried point by point, so one bad offset costs only itself."""
        groups: dict[tuple[str, bool], list[ProbePoint]] = {}
        for pt in lib.points:
            groups.setdefault((pt.fn, pt.ret), []).append(pt)
        done: list[ProbePoint] = []
        fds: list[int] = []
        for (fn, ret), points in groups.items():
            prog = self._program(fn, lib, len(points))
            if prog is None:
                continue
            # the group, then (if it is refused) each point alone: a lone point once
            for part in (points, *([pt] for pt in points if len(points) > 1)):
                try:
                    fds.append(uprobe_links.attach(prog, lib.path, [p.offset for p in part],
                                                   ret, pid))
                except OSError as exc:
                    if len(part) == 1:
                        self.attach_errors += 1
                        note(Loss.ATTACH, f"{fn} at {lib.path}+{part[0].offset:#x}: {exc}")
                    continue
                done += part
                if part is points:
                    break
        return done, fds

    def _attach_each(self, lib: Library, pid: int) -> tuple[list[ProbePoint], list[int]]:
        """A perf-event uprobe a point (kernels before uprobe_multi links)."""
        done, fds = [], []
        for pt in lib.points:
            prog = self._program(pt.fn, lib, 1)
            fd = -1 if prog is None else _attach_uprobe(prog, pt.ret, lib.path, pt.offset, pid)
            if fd < 0:
                if prog is not None:
                    self.attach_errors += 1
                    note(Loss.ATTACH, f"{pt.fn} at {lib.path}+{pt.offset:#x} pid {pid}: "
                                      f"{os.strerror(-fd)}")
                continue
            done.append(pt)
            fds.append(fd)
        return done, fds

    def detach_pid(self, pid: int) -> None:
        for key in [k for k in self.attached if k[1] == pid]:
            del self.attached[key]
            self._close_all(self._probe_fds.pop(key, []))

    @property
    def probes_attached(self) -> int:
        return sum(len(v) for v in self.attached.values())

    # -- maps --------------------------------------------------------------
    def trace_pid(self, pid: int) -> None:
        self.obj["traced_pids"][ctypes.c_uint32(pid)] = ctypes.c_uint8(1)

    def untrace_pid(self, pid: int) -> None:
        try:
            del self.obj["traced_pids"][ctypes.c_uint32(pid)]
        except KeyError:
            pass

    def watch_comms(self, names) -> None:
        """Names whose exec marks the process traced in the kernel itself."""
        table = self.obj["watch_comms"]
        table.clear()
        for name in names:
            key = table.Key()
            key.c = name.encode()[:COMM_LEN - 1]    # zero-padded, as the kernel's comm
            table[key] = ctypes.c_uint8(1)

    def forget_pid(self, pid: int) -> None:
        """Remove every map entry that belongs to an exited process."""
        self.untrace_pid(pid)
        try:
            del self.obj["go_pids"][ctypes.c_uint32(pid)]
        except KeyError:
            pass
        for name, pid_of in (("conns", lambda k: k.value >> 32),
                             ("ssl_fds", lambda k: k.pid),
                             ("active_go", lambda k: k.pid)):
            table = self.obj[name]
            for k in [k for k in table.keys() if pid_of(k) == pid]:
                try:
                    del table[k]
                except KeyError:
                    pass

    def take_opaque(self, pid: int, fd: int, conn_id: int) -> Optional[tuple[int, int]]:
        """An opaque TLS connection's counts (collector/opaque_exit.py), its
        entry removed; None when it is gone or no longer opaque."""
        table = self.obj["conns"]
        key = ctypes.c_uint64((pid << 32) | (fd & 0xFFFF_FFFF))
        try:
            c = table[key]
        except KeyError:
            return None
        if c.id != conn_id or not c.opaque:
            return None
        counts = (int(c.o.sent), int(c.o.received))
        try:
            del table[key]
        except KeyError:
            pass
        return counts

    def lost_counts(self) -> dict[Loss, int]:
        table = self.obj["lost"]
        return {loss: sum(table.per_cpu(ctypes.c_int(slot)))
                for slot, loss in KERNEL_LOSS_SLOTS.items()}

    def map_sizes(self) -> dict[str, int]:
        return {name: len(self.obj[name].keys()) for name in MAP_NAMES}

    def close(self) -> None:
        """Detach everything at once: each release waits for a kernel grace
        period (~0.05-0.15 s here), and waits run side by side overlap."""
        fds = [fd for fds in self._probe_fds.values() for fd in fds]
        self._close_all(fds + self.obj.tracepoint_fds)
        self._probe_fds.clear()
        self.obj.tracepoint_fds.clear()
        self.obj.close()

    def _close_all(self, fds: list[int]) -> None:
        def close(fd: int) -> None:
            try:
                os.close(fd)
            except OSError:
                self.detach_errors += 1
        _side_by_side([lambda fd=fd: close(fd) for fd in fds])


def _side_by_side(calls: list[Callable[[], None]]) -> None:
    """Run blocking kernel releases in threads of their own and wait for all."""
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# int bpf_attach_uprobe(int progfd, enum bpf_probe_attach_type, const char *ev_name,
#     const char *binary_path, uint64_t offset, pid_t pid, uint32_t ref_ctr_offset):
# declared here whole (Debian's BCC 0.26 declares it without ref_ctr_offset, so
# a garbage offset reaches the kernel).
_ATTACH_UPROBE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                  ctypes.c_char_p, ctypes.c_uint64, ctypes.c_int,
                                  ctypes.c_uint32, use_errno=True)


def _attach_uprobe(prog: int, ret: bool, path: str, offset: int, pid: int) -> int:
    """A perf-event uprobe's fd, or -errno."""
    from bcc import lib
    fn = _ATTACH_UPROBE(ctypes.cast(lib.bpf_attach_uprobe, ctypes.c_void_p).value)
    event = "".join(c if c.isalnum() else "_" for c in f"{'r' if ret else 'p'}_{path}_"
                                                         f"{offset:#x}_{pid}")
    fd = fn(prog, 1 if ret else 0, event.encode(), os.fsencode(path), offset, pid, 0)
    return fd if fd >= 0 else -(ctypes.get_errno() or 1)


def self_pid() -> int:
    return os.getpid()
