"""The BCC program: load it, attach uprobes, drain its ring buffer, read its maps.

This is the only module that imports bcc.  Filters are compile-time `-D`
flags or map entries, never edits of the C text.  Every uprobe attached is
remembered exactly ((path, pid) -> probe points), so detaching a process
undoes what was done for it and nothing else.  Uprobes are uprobe_multi links
where the kernel has them (collector/uprobe_links.py), BCC's perf-event
uprobes elsewhere.
"""
from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

from s3slower import bpf as bpf_src
from s3slower.collector import uprobe_links
from s3slower.collector.libraries import Library, ProbePoint
from s3slower.common.events import COMM_LEN, KERNEL_LOSS_SLOTS
from s3slower.common.losses import Loss
from s3slower.reasons import note

# the hash maps (the task-local `threads` cannot be listed; it dies with its thread)
MAP_NAMES = ("conns", "ssl_fds", "traced_pids", "active_go", "go_pids", "seen_pids")
DEFAULT_RINGBUF_PAGES = 2048  # 8 MiB, see RINGBUF_PAGES in the C source
# Programs that others tail-call (their code verified once): the program
# array that holds each, the function, tracepoint or uprobe type.
SHARED_PROGRAMS = ((b"io_exits", b"io_exit_tp", "tp"), (b"frame_tp", b"frame_head_tp", "tp"),
                   (b"tls_exits", b"tls_exit_up", "up"), (b"frame_up", b"frame_head_up", "up"),
                   (b"go_sends", b"go_send_tp", "tp"))


class ProbeError(RuntimeError):
    """The BPF program could not be compiled, loaded or attached."""


@dataclass(frozen=True)
class ProgramOptions:
    trace_all: bool = True
    self_pid: int = 0
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES


class Probes:
    def __init__(self, opts: ProgramOptions, on_record: Callable[[bytes], None]):
        try:
            from bcc import BPF  # distribution package python3-bpfcc
        except ImportError as exc:
            raise ProbeError("BCC is not importable: install python3-bpfcc "
                             "(never the PyPI package 'bcc')") from exc
        cflags = [f"-I{bpf_src.DIR}", f"-DRINGBUF_PAGES={opts.ringbuf_pages}"]
        if opts.trace_all:
            cflags.append("-DTRACE_ALL")
        if opts.self_pid:
            cflags.append(f"-DSELF_PID={opts.self_pid}")
        try:
            self.bpf = BPF(src_file=str(bpf_src.PROGRAM).encode(), cflags=cflags)
        except Exception as exc:  # BCC raises bare Exception
            raise ProbeError(f"cannot load the BPF program: {exc}") from exc
        self._on_record = on_record

        def _cb(_ctx, data, size):
            on_record(ctypes.string_at(data, size))
            return 0

        self._cb = _cb  # keep the ctypes callback alive
        self.bpf[b"events"].open_ring_buffer(_cb)
        self._kprobe = BPF.KPROBE
        self._links: Optional[dict[tuple[str, int], list[int]]] = \
            {} if uprobe_links.supported() else None
        self._uprobe_type = uprobe_links.BPF_TRACE_UPROBE_MULTI if self._links is not None else -1
        # The verifier takes ~0.1-0.15 s over each of the big shared programs
        # (the ioctl runs without the GIL): side by side, on every core.
        def load(shared):
            _, fn, kind = shared
            return self.bpf.load_func(fn, BPF.TRACEPOINT if kind == "tp" else BPF.KPROBE,
                                      attach_type=-1 if kind == "tp" else self._uprobe_type)
        try:
            with ThreadPoolExecutor(len(SHARED_PROGRAMS)) as pool:
                progs = list(pool.map(load, SHARED_PROGRAMS))
        except Exception as exc:  # BCC raises bare Exception
            raise ProbeError(f"cannot load the BPF program: {exc}") from exc
        for (array, _, _), prog in zip(SHARED_PROGRAMS, progs):
            self.bpf[array][ctypes.c_int(0)] = ctypes.c_int(prog.fd)
        # (path, pid) -> the probe points attached there, and their links' fds
        self.attached: dict[tuple[str, int], tuple[ProbePoint, ...]] = {}
        self.attach_errors = 0
        self.detach_errors = 0

    # -- draining ----------------------------------------------------------
    def fileno(self) -> int:
        """The ring buffer's fd: readable while records wait to be drained."""
        return self.bpf[b"events"].map_fd

    def consume(self) -> None:
        """Drain every record there is now (on_record for each), without waiting."""
        self.bpf.ring_buffer_consume()

    # -- uprobes -----------------------------------------------------------
    def attach(self, lib: Library, pid: int = -1) -> int:
        """Attach a library's probe points (all processes when pid=-1)."""
        key = (lib.path, pid)
        if key in self.attached:
            return 0
        if self._links is None:
            done = self._attach_each(lib, pid)
        else:
            done, self._links[key] = self._attach_linked(lib, pid)
        self.attached[key] = tuple(done)
        return len(done)

    def _attach_linked(self, lib: Library, pid: int) -> tuple[list[ProbePoint], list[int]]:
        """One link per (BPF function, entry or return); a link the kernel
        refuses is tried point by point, so one bad offset costs only itself."""
        groups: dict[tuple[str, bool], list[ProbePoint]] = {}
        for pt in lib.points:
            groups.setdefault((pt.fn, pt.ret), []).append(pt)
        done: list[ProbePoint] = []
        fds: list[int] = []
        for (fn, ret), points in groups.items():
            try:
                prog = self.bpf.load_func(fn.encode(), self._kprobe,
                                          attach_type=self._uprobe_type).fd
            except Exception as exc:  # BCC raises bare Exception
                self.attach_errors += len(points)
                note(Loss.ATTACH, f"cannot load {fn} for {lib.path}: {exc}", len(points))
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

    def _attach_each(self, lib: Library, pid: int) -> list[ProbePoint]:
        done = []
        for pt in lib.points:
            how = self.bpf.attach_uretprobe if pt.ret else self.bpf.attach_uprobe
            try:
                how(name=lib.path.encode(), addr=pt.addr, fn_name=pt.fn.encode(), pid=pid)
                done.append(pt)
            except Exception as exc:  # BCC raises bare Exception (e.g. the process is gone)
                self.attach_errors += 1
                note(Loss.ATTACH, f"{pt.fn} at {lib.path}:{pt.addr:#x} pid {pid}: {exc}")
        return done

    def detach_pid(self, pid: int) -> None:
        for key in [k for k in self.attached if k[1] == pid]:
            points = self.attached.pop(key)
            if self._links is not None:
                _close_all(self._links.pop(key, []))
                continue
            for pt in points:
                self._detach(key[0], pt, pid)

    def _detach(self, path: str, pt: ProbePoint, pid: int) -> None:
        how = self.bpf.detach_uretprobe if pt.ret else self.bpf.detach_uprobe
        try:
            how(name=path.encode(), addr=pt.addr, pid=pid)
        except Exception as exc:  # BCC raises bare Exception; count, do not hide
            self.detach_errors += 1
            note(Loss.DETACH, f"{pt.fn} at {path}:{pt.addr:#x} pid {pid}: {exc}")

    @property
    def probes_attached(self) -> int:
        return sum(len(v) for v in self.attached.values())

    # -- maps --------------------------------------------------------------
    def trace_pid(self, pid: int) -> None:
        self.bpf[b"traced_pids"][ctypes.c_uint32(pid)] = ctypes.c_uint8(1)

    def untrace_pid(self, pid: int) -> None:
        try:
            del self.bpf[b"traced_pids"][ctypes.c_uint32(pid)]
        except KeyError:
            pass

    def watch_comms(self, names) -> None:
        """Names whose exec marks the process traced in the kernel itself."""
        table = self.bpf[b"watch_comms"]
        table.clear()
        for name in names:
            key = table.Key()
            key.c = name.encode()[:COMM_LEN - 1]    # zero-padded, as the kernel's comm
            table[key] = ctypes.c_uint8(1)

    def forget_pid(self, pid: int) -> None:
        """Remove every map entry that belongs to an exited process."""
        self.untrace_pid(pid)
        try:
            del self.bpf[b"go_pids"][ctypes.c_uint32(pid)]
        except KeyError:
            pass
        for name, pid_of in (("conns", lambda k: k.value >> 32),
                             ("ssl_fds", lambda k: k.pid),
                             ("active_go", lambda k: k.pid)):
            table = self.bpf[name.encode()]
            for k in [k for k in table.keys() if pid_of(k) == pid]:
                try:
                    del table[k]
                except KeyError:
                    pass

    def take_opaque(self, pid: int, fd: int, conn_id: int) -> Optional[tuple[int, int]]:
        """An opaque TLS connection's counts (collector/opaque_exit.py), its
        entry removed; None when it is gone or no longer opaque."""
        table = self.bpf[b"conns"]
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
        table = self.bpf[b"lost"]
        return {loss: int(sum(table.getvalue(ctypes.c_int(slot))))
                for slot, loss in KERNEL_LOSS_SLOTS.items()}

    def map_sizes(self) -> dict[str, int]:
        return {name: len(list(self.bpf[name.encode()].keys()))
                for name in MAP_NAMES}

    def close(self) -> None:
        """Detach everything at once: each release waits for a kernel grace
        period (~0.05-0.15 s here), and waits run side by side overlap."""
        fds = [fd for fds in (self._links or {}).values() for fd in fds]
        tracepoints = list(self.bpf.tracepoint_fds)
        _side_by_side([lambda fd=fd: os.close(fd) for fd in fds]
                      + [lambda tp=tp: self.bpf.detach_tracepoint(tp) for tp in tracepoints])
        if self._links:
            self._links.clear()
        self.bpf.cleanup()


def _close_all(fds: list[int]) -> None:
    _side_by_side([lambda fd=fd: os.close(fd) for fd in fds])


def _side_by_side(calls: list[Callable[[], None]]) -> None:
    """Run blocking kernel releases in threads of their own and wait for all."""
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def self_pid() -> int:
    return os.getpid()
