"""uprobe_multi BPF links: every uprobe of one program in one file, one fd.

BCC 0.26 attaches each uprobe as a perf event of its own, and closing one
costs the kernel a grace period (~0.1 s on the reference machine, one after
another): a trace-all collector with 32 probes took 4 s to stop.  A
uprobe_multi link (Linux 6.6) attaches all offsets of one (file, program,
entry or return, pid) with one bpf(BPF_LINK_CREATE) and pays the grace period
once when its fd is closed (10 probes: 5 ms to attach, 25 ms to close).

The program must have been loaded with this expected attach type, so one
collector uses links for all its uprobes or for none (`supported()`).
"""
from __future__ import annotations

import ctypes
import os
import re
import struct
from typing import Sequence

BPF_LINK_CREATE = 28                  # enum bpf_cmd
BPF_TRACE_UPROBE_MULTI = 48           # enum bpf_attach_type
BPF_F_UPROBE_MULTI_RETURN = 1
MIN_KERNEL = (6, 6)
_SYS_BPF = {"x86_64": 321, "aarch64": 280}
# union bpf_attr, link_create: prog_fd, target_fd, attach_type, flags (u32
# each), then uprobe_multi: path, offsets, ref_ctr_offsets, cookies (u64
# pointers), cnt, flags, pid (u32).
_HEAD = struct.Struct("=IIII")
_MULTI = struct.Struct("=QQQQIII")
_ATTR_SIZE = 64

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def supported(release: str = "", machine: str = "") -> bool:
    """Links are used on Linux >= 6.6 on the architectures named above."""
    uname = os.uname()
    m = re.match(r"(\d+)\.(\d+)", release or uname.release)
    return (bool(m) and (int(m[1]), int(m[2])) >= MIN_KERNEL
            and (machine or uname.machine) in _SYS_BPF)


def attach(prog_fd: int, path: str, offsets: Sequence[int], ret: bool, pid: int) -> int:
    """One link running prog_fd at each file offset of path (uretprobes when
    ret), for process pid only when pid > 0.  Returns the link's fd; raises
    OSError as the kernel refused it (one bad offset refuses the link)."""
    c_path = ctypes.create_string_buffer(os.fsencode(path))
    c_offsets = (ctypes.c_uint64 * len(offsets))(*offsets)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    _HEAD.pack_into(attr, 0, prog_fd, 0, BPF_TRACE_UPROBE_MULTI, 0)
    _MULTI.pack_into(attr, _HEAD.size, ctypes.addressof(c_path), ctypes.addressof(c_offsets),
                     0, 0, len(offsets), BPF_F_UPROBE_MULTI_RETURN if ret else 0, max(pid, 0))
    fd = _libc.syscall(_SYS_BPF[os.uname().machine], BPF_LINK_CREATE, attr, _ATTR_SIZE)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"uprobe_multi link on {path}: {os.strerror(err)}")
    return int(fd)
