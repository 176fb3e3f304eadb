"""The BCC program: load it, attach uprobes, drain its ring buffer, read its maps.

This is the only module that imports bcc.  Filters are compile-time `-D`
flags or map entries, never edits of the C text.  Every uprobe attached is
remembered exactly ((path, pid) -> probe points), so detaching a process
undoes what was done for it and nothing else.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Callable

from s3slower import bpf as bpf_src
from s3slower.collector.libraries import Library, ProbePoint
from s3slower.common.events import COMM_LEN, KERNEL_LOSS_SLOTS

# the hash maps (the task-local `threads` cannot be listed; it dies with its thread)
MAP_NAMES = ("conns", "ssl_fds", "traced_pids", "active_go", "go_pids", "seen_pids")
DEFAULT_RINGBUF_PAGES = 2048  # 8 MiB, see RINGBUF_PAGES in the C source


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
        # (path, pid) -> number of probes attached there
        self.attached: dict[tuple[str, int], tuple[ProbePoint, ...]] = {}
        self.attach_errors = 0
        self.detach_errors = 0

    # -- draining ----------------------------------------------------------
    def poll(self, timeout_ms: int) -> None:
        """Wait up to timeout_ms, then drain: most data records do not wake us
        (BPF_RB_NO_WAKEUP but every WAKEUP_EVERY-th), so the consume reads them."""
        self.bpf.ring_buffer_poll(timeout_ms)
        self.bpf.ring_buffer_consume()

    def consume(self) -> None:
        self.bpf.ring_buffer_consume()

    # -- uprobes -----------------------------------------------------------
    def attach(self, lib: Library, pid: int = -1) -> int:
        """Attach a library's probe points (all processes when pid=-1)."""
        key = (lib.path, pid)
        if key in self.attached:
            return 0
        done = []
        for pt in lib.points:
            how = self.bpf.attach_uretprobe if pt.ret else self.bpf.attach_uprobe
            try:
                how(name=lib.path.encode(), addr=pt.addr, fn_name=pt.fn.encode(), pid=pid)
                done.append(pt)
            except Exception:  # BCC raises bare Exception (e.g. the process is gone)
                self.attach_errors += 1
        self.attached[key] = tuple(done)
        return len(done)

    def detach_pid(self, pid: int) -> None:
        for key in [k for k in self.attached if k[1] == pid]:
            for pt in self.attached.pop(key):
                self._detach(key[0], pt, pid)

    def _detach(self, path: str, pt: ProbePoint, pid: int) -> None:
        how = self.bpf.detach_uretprobe if pt.ret else self.bpf.detach_uprobe
        try:
            how(name=path.encode(), addr=pt.addr, pid=pid)
        except Exception:  # BCC raises bare Exception; count, do not hide
            self.detach_errors += 1

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

    def lost_counts(self) -> dict[str, int]:
        table = self.bpf[b"lost"]
        out = {}
        for slot, name in KERNEL_LOSS_SLOTS.items():
            out[name] = int(sum(table.getvalue(ctypes.c_int(slot))))
        return out

    def map_sizes(self) -> dict[str, int]:
        return {name: len(list(self.bpf[name.encode()].keys()))
                for name in MAP_NAMES}

    def close(self) -> None:
        self.bpf.cleanup()


def self_pid() -> int:
    return os.getpid()
