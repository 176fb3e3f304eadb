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

import os
import re
from typing import Sequence

from s3slower.collector import bpfsys

BPF_TRACE_UPROBE_MULTI = 48           # enum bpf_attach_type
BPF_F_UPROBE_MULTI_RETURN = 1
MIN_KERNEL = (6, 6)


def supported(release: str = "", machine: str = "") -> bool:
    """Links are used on Linux >= 6.6 on the architectures bpfsys knows."""
    uname = os.uname()
    m = re.match(r"(\d+)\.(\d+)", release or uname.release)
    return (bool(m) and (int(m[1]), int(m[2])) >= MIN_KERNEL
            and bpfsys.supported_machine(machine))


def attach(prog_fd: int, path: str, offsets: Sequence[int], ret: bool, pid: int) -> int:
    """One link running prog_fd at each file offset of path (uretprobes when
    ret), for process pid only when pid > 0.  Returns the link's fd; raises
    OSError as the kernel refused it (one bad offset refuses the link)."""
    return bpfsys.uprobe_multi_link(prog_fd, BPF_TRACE_UPROBE_MULTI, path, offsets,
                                    BPF_F_UPROBE_MULTI_RETURN if ret else 0, max(pid, 0))
