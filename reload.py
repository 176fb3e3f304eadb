"""Notice when configuration should be re-read: a file changed, or SIGHUP.

Polling (size, mtime, inode) once a second is enough for config files and
needs no inotify; editors that replace a file (new inode) are seen too.

SIGHUP has two meanings: `kill -HUP` / `systemctl reload` asks for a
re-read, while a terminal that is closed sends it too, and a tracer started
in that terminal must then stop rather than run on unseen.  The terminal's
state tells them apart: after a hangup every ioctl on it fails with EIO.
"""
from __future__ import annotations

import errno
import os
import signal
import termios
from typing import Callable, Iterable, Optional


def terminal_hung_up(fds: Iterable[int] = (0, 1, 2)) -> bool:
    """True when one of these descriptors is a terminal that has hung up."""
    for fd in fds:
        try:
            termios.tcgetattr(fd)
        except termios.error as exc:
            if exc.args and exc.args[0] == errno.EIO:
                return True
        except (OSError, ValueError):
            pass
    return False


def on_sighup(reload: Callable[[], None]) -> None:
    """SIGHUP calls `reload` -- unless this process's terminal hung up: then
    it stops the process the way SIGTERM does (its handler, if any, runs)."""
    def handler(signum, frame):
        if terminal_hung_up():
            signal.raise_signal(signal.SIGTERM)
        else:
            reload()
    signal.signal(signal.SIGHUP, handler)


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
            on_sighup(self._on_hup)

    def set_paths(self, paths: Iterable[Optional[str]]) -> None:
        """Watch these files from now on (a newly named one as it is now)."""
        self.paths = [p for p in paths if p]
        for p in self.paths:
            self._stamps.setdefault(p, _stamp(p))

    def _on_hup(self) -> None:
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
