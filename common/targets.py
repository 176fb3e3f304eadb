"""Which processes to trace: --pid, --watch and targets.yml matchers (pure).

A `Selection` answers, for a process described by its comm, executable and
command line, whether it is traced and under which target (for prom_labels).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional

MATCH_TYPES = ("comm", "exe_basename", "cmdline_substring")
TLS_MODES = ("auto", "http", "openssl", "gnutls", "nss", "go")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    comm: str
    exe: str
    cmdline: str


@dataclass(frozen=True)
class Target:
    id: str
    match_type: str
    value: str
    mode: str = "auto"
    prom_labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, p: ProcInfo) -> bool:
        if self.match_type == "comm":
            # the kernel truncates comm to 15 bytes; compare the same way
            return p.comm == self.value[:15]
        if self.match_type == "exe_basename":
            return os.path.basename(p.exe) == self.value
        return self.value in p.cmdline


WATCH_PREFIX = "watch:"


@dataclass(frozen=True)
class Selection:
    pids: frozenset[int] = frozenset()
    targets: tuple[Target, ...] = ()
    mode: str = "auto"      # --mode: the TLS families probed (http: none)

    @property
    def trace_all(self) -> bool:
        return not self.pids and not self.targets

    @classmethod
    def build(cls, pids=(), watch=(), targets=(), mode: str = "auto") -> "Selection":
        """A --mode other than auto overrides every target's own mode."""
        watched = tuple(Target(WATCH_PREFIX + name, "comm", name, mode) for name in watch)
        if mode != "auto":
            targets = tuple(replace(t, mode=mode) for t in targets)
        return cls(frozenset(pids), tuple(targets) + watched, mode)

    @property
    def match_all(self) -> Target:
        return ALL if self.mode == "auto" else replace(ALL, mode=self.mode)

    def exec_comms(self) -> tuple[str, ...]:
        """Names the kernel can match at exec (the comm there is the executable's
        basename cut to 15 bytes): comm and exe_basename targets.  A guess the
        collector confirms with match(); cmdline targets wait for it."""
        names = {t.value[:15] for t in self.targets
                 if t.match_type in ("comm", "exe_basename") and t.value}
        return tuple(sorted(names))

    def match(self, p: ProcInfo) -> Optional[Target]:
        """The target that selects p; ALL for everything-mode; None if untraced."""
        if self.trace_all:
            return self.match_all
        if p.pid in self.pids:
            return Target(f"pid:{p.pid}", "comm", p.comm, self.mode)
        for t in self.targets:
            if t.matches(p):
                return t
        return None


ALL = Target("all", "comm", "")
