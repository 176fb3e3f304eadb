"""The BCC program: load it, attach uprobes, drain its ring buffer, read its maps.

This is the only module that imports bcc.  Filters are compile-time `-D`
flags or map entries, never edits of the C text.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Callable

from s3slower import bpf as bpf_src
from s3slower.common.events import KERNEL_LOSS_SLOTS

# (symbol, entry function, return function) per library family.
OPENSSL_PROBES = (
    ("SSL_write", "ssl_write_enter", "ssl_write_return"),
    ("SSL_read", "ssl_read_enter", "ssl_read_return"),
    ("SSL_write_ex", "ssl_write_ex_enter", "ssl_write_ex_return"),
    ("SSL_read_ex", "ssl_read_ex_enter", "ssl_read_ex_return"),
)
LIBRARY_PROBES = {"openssl": OPENSSL_PROBES}

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
        self.bpf["events"].open_ring_buffer(_cb)
        # (path, pid) -> number of probes attached there
        self.attached: dict[tuple[str, int], int] = {}

    # -- draining ----------------------------------------------------------
    def poll(self, timeout_ms: int) -> None:
        self.bpf.ring_buffer_poll(timeout_ms)

    def consume(self) -> None:
        self.bpf.ring_buffer_consume()

    # -- uprobes -----------------------------------------------------------
    def attach_library(self, family: str, path: str, pid: int = -1) -> int:
        """Attach one library family's probes to `path` (all processes when pid=-1)."""
        if (path, pid) in self.attached:
            return 0
        n = 0
        for sym, enter, ret in LIBRARY_PROBES[family]:
            try:
                self.bpf.attach_uprobe(name=path.encode(), sym=sym.encode(),
                                       fn_name=enter.encode(), pid=pid)
                self.bpf.attach_uretprobe(name=path.encode(), sym=sym.encode(),
                                          fn_name=ret.encode(), pid=pid)
                n += 1
            except Exception:  # symbol absent in this build: not an error
                continue
        self.attached[(path, pid)] = n
        return n

    def detach_pid(self, pid: int) -> None:
        for (path, p) in [k for k in self.attached if k[1] == pid]:
            for family in LIBRARY_PROBES.values():
                for sym, _enter, _ret in family:
                    for detach in (self.bpf.detach_uprobe, self.bpf.detach_uretprobe):
                        try:
                            detach(name=path.encode(), sym=sym.encode(), pid=pid)
                        except Exception:  # never attached: nothing to undo
                            pass
            del self.attached[(path, p)]

    # -- maps --------------------------------------------------------------
    def trace_pid(self, pid: int) -> None:
        self.bpf["traced_pids"][ctypes.c_uint32(pid)] = ctypes.c_uint8(1)

    def forget_pid(self, pid: int) -> None:
        """Remove every map entry that belongs to an exited process."""
        tp = self.bpf["traced_pids"]
        try:
            del tp[ctypes.c_uint32(pid)]
        except KeyError:
            pass
        conns = self.bpf["conns"]
        for k in [k for k in conns.keys() if k.value >> 32 == pid]:
            try:
                del conns[k]
            except KeyError:
                pass
        fds = self.bpf["ssl_fds"]
        for k in [k for k in fds.keys() if k.pid == pid]:
            try:
                del fds[k]
            except KeyError:
                pass

    def lost_counts(self) -> dict[str, int]:
        table = self.bpf["lost"]
        out = {}
        for slot, name in KERNEL_LOSS_SLOTS.items():
            out[name] = int(sum(table.getvalue(ctypes.c_int(slot))))
        return out

    def map_sizes(self) -> dict[str, int]:
        return {name: len(list(self.bpf[name].keys()))
                for name in ("conns", "ssl_fds", "traced_pids", "active_io", "active_tls")}

    def close(self) -> None:
        self.bpf.cleanup()


def self_pid() -> int:
    return os.getpid()
