"""Notice when configuration should be re-read: a file changed, or SIGHUP.

Polling (size, mtime, inode) once a second is enough for config files and
needs no inotify; editors that replace a file (new inode) are seen too.
"""
from __future__ import annotations

import os
import signal
from typing import Iterable, Optional


def _stamp(path: str) -> Optional[tuple[int, int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ReloadWatch:
    def __init__(self, paths: Iterable[Optional[str]], *, sighup: bool = True):
        self.paths: list[str] = []
        self._stamps: dict[str, Optional[tuple[int, int, int]]] = {}
        self.set_paths(paths)
        self._hup = False
        if sighup:
            signal.signal(signal.SIGHUP, self._on_hup)

    def set_paths(self, paths: Iterable[Optional[str]]) -> None:
        """Watch these files from now on (a newly named one as it is now)."""
        self.paths = [p for p in paths if p]
        for p in self.paths:
            self._stamps.setdefault(p, _stamp(p))

    def _on_hup(self, *_):
        self._hup = True

    def due(self) -> bool:
        """True once per change (or SIGHUP) since the last call."""
        changed = self._hup
        self._hup = False
        for p in self.paths:
            s = _stamp(p)
            if s != self._stamps[p]:
                self._stamps[p] = s
                changed = True
        return changed
