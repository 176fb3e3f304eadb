"""Which processes are traced, and which TLS code is probed in them.

Invariants:
  * Everything-mode: each TLS file (library, Go or node executable, bundled
    extension) is probed once, system-wide.  Uprobes belong to the file's
    inode, so every later process mapping it is covered from its exec on.
  * Targets mode (--pid, --watch, targets.yml): a process is traced exactly
    while the Selection matches it.  Its uprobes are attached for its pid
    only (the system TLS libraries at once, so a library it dlopens later is
    already covered; its own files as found in its maps), and detached when
    it exits or execs into something untraced.  Names a target matches on
    (comm, and exe basenames, which become the comm at exec) are also given
    to the kernel, which marks a matching process traced at exec, before
    this collector has seen it: its very first connect() is followed.
  * Libraries loaded later (dlopen) are found when the kernel reports an
    executable mmap by a traced process (S3S_EV_MMAP): its maps are read
    again then, before the library's first call in practice.
  * After on_exit(pid) no dict here, no uprobe and no BPF map entry holds
    that pid.
"""
from __future__ import annotations

from typing import Callable, Optional

from s3slower.collector import processes
from s3slower.collector.libraries import Library, LibraryFinder
from s3slower.collector.probes import Probes
from s3slower.common.targets import ProcInfo, Selection, Target

ALL_PIDS = -1


class Tracker:
    def __init__(self, probes: Probes, selection: Selection,
                 announce: Callable[[ProcInfo, Target], None],
                 finder: Optional[LibraryFinder] = None):
        self.probes = probes
        self.selection = selection
        self.announce = announce
        self.finder = finder or LibraryFinder()
        self.traced: dict[int, Target] = {}
        # most S3 clients use OpenSSL: in targets mode its probes go in first,
        # racing the new process's first TLS call
        self._system_libs: list[Library] = sorted(
            self.finder.system_libraries(), key=lambda lib: lib.family != "openssl")

    def start(self) -> None:
        if self.selection.trace_all:
            for lib in self._system_libs:
                if _wanted(self.selection.match_all, lib):
                    self.probes.attach(lib, ALL_PIDS)
        else:
            self.probes.watch_comms(self.selection.exec_comms())
        for pid in processes.all_pids():
            self._consider(pid)

    def reselect(self, selection: Selection) -> None:
        """Apply new targets to every running process (config reload)."""
        if selection.trace_all != self.selection.trace_all:
            raise ValueError("switching between tracing everything and tracing targets "
                             "needs a restart")
        self.selection = selection
        if not selection.trace_all:
            self.probes.watch_comms(selection.exec_comms())
        for pid in processes.all_pids():
            if pid in self.traced:
                info = processes.proc_info(pid)
                if info is not None and selection.match(info) == self.traced[pid]:
                    continue        # still the same target: its probes stay attached
            self._consider(pid)

    def on_exec(self, pid: int, seen: Optional[ProcInfo] = None) -> None:
        """seen: the process as the kernel's exec record names it (comm, and
        the executed file as exe), for a process gone before /proc is read."""
        self._consider(pid, seen)

    def on_mmap(self, pid: int) -> None:
        target = self.selection.match_all if self.selection.trace_all \
            else self.traced.get(pid)
        if target is not None:
            self._attach_mapped(pid, target)

    def on_exit(self, pid: int) -> None:
        self.traced.pop(pid, None)
        self.probes.detach_pid(pid)
        self.probes.forget_pid(pid)

    # ----------------------------------------------------------------------
    def _consider(self, pid: int, seen: Optional[ProcInfo] = None) -> None:
        info = processes.proc_info(pid)
        if info is None or not info.exe:
            # gone (or exiting) already: its EXIT record follows.  A client
            # done in milliseconds still has records in flight, which carry
            # its target's labels only if it is announced.
            if seen is not None and not self.selection.trace_all:
                target = self.selection.match(seen)
                if target is not None:
                    self.announce(seen, target)
            return
        target = self.selection.match(info)
        if target is None:
            if pid in self.traced:      # exec'd into something untraced
                self.on_exit(pid)
            elif not self.selection.trace_all:
                self.probes.untrace_pid(pid)   # a name the kernel guessed at exec
            return
        if not self.selection.trace_all:
            if pid in self.traced:      # exec'd again: the old image's probes go
                self.probes.detach_pid(pid)
            self.probes.trace_pid(pid)
            self.traced[pid] = target
            for lib in self._system_libs:
                if _wanted(target, lib):
                    self.probes.attach(lib, pid)
            self.announce(info, target)
        self._attach_mapped(pid, target)

    def _attach_mapped(self, pid: int, target: Target) -> None:
        where = ALL_PIDS if self.selection.trace_all else pid
        for lib in self.finder.for_pid(pid):
            if _wanted(target, lib):
                self.probes.attach(lib, where)


def _wanted(target: Target, lib: Library) -> bool:
    """A target's `mode` limits which TLS family is probed (http: none)."""
    return target.mode == "auto" or target.mode == lib.family
