"""Reload: when the configuration is re-read (a file changed, or SIGHUP), and
what a running tracer takes on from it.

The policy: the aggregator takes on the keys of AGGREGATOR_LIVE at once, and
the collector the targets (which targets.yml, and what it says); a key a flag
set stays as the flag said (the command line wins, as at start); every other
change is reported and takes effect after a restart.  Each decision is one
warning line.

Polling (size, mtime, inode) once a second is enough for config files and
needs no inotify; editors that replace a file (new inode) are seen too.

SIGHUP has two meanings: `kill -HUP` / `systemctl reload` asks for a
re-read, while a terminal that is closed sends it too, and a tracer started
in that terminal must then stop rather than run on unseen.  The terminal's
state tells them apart: after a hangup every ioctl on it fails with EIO.
"""
from __future__ import annotations

import enum
import errno
import logging
import os
import signal
import termios
from typing import Callable, Iterable, Optional

from s3slower.common.config import Config, ConfigError, load_config
from s3slower.common.configkeys import FLAG_OF_KEY, changed_keys, key_value
from s3slower.common.settings import Settings

log = logging.getLogger("s3slower")


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


# --------------------------------------------------------------------------
# the policy

# key -> how a running aggregator takes it on
AGGREGATOR_LIVE: dict[str, Callable[[object, Config], None]] = {
    "min_latency_ms": lambda agg, c: agg.set_min_latency(c.min_latency_ms),
}


class Change(enum.Enum):
    APPLY = "apply"          # taken on at once
    PINNED = "pinned"        # could be, but a flag on the command line set it
    RESTART = "restart"      # takes effect after a restart


def plan(old: Config, new: Config, pinned: frozenset[str],
         live: Iterable[str] = AGGREGATOR_LIVE) -> tuple[tuple[str, Change], ...]:
    """What becomes of each key that differs between two readings of the file."""
    live = set(live)
    return tuple((key, Change.RESTART if key not in live else
                  Change.PINNED if key in pinned else Change.APPLY)
                 for key in changed_keys(old, new))


def _say(key: str, change: Change, new: Config) -> None:
    if change is Change.APPLY:
        log.warning("configuration reloaded: %s = %s", key, key_value(new, key))
    elif change is Change.PINNED:
        log.warning("configuration: %s changed but --%s on the command line wins",
                    key, FLAG_OF_KEY[key].replace("_", "-"))
    else:
        log.warning("configuration: %s changed; it takes effect after a restart", key)


def aggregator_reloader(settings: Settings, agg) -> Optional[Callable[[], None]]:
    """A check to run once a second: re-read the file when it changed (or on
    SIGHUP) and apply what the policy allows to `agg`."""
    path = settings.config_path
    if not path:
        on_sighup(lambda: log.warning("SIGHUP: no configuration file to re-read"))
        return None
    if not os.access(path, os.R_OK):        # after dropping root: as the service user
        log.warning("%s is not readable by this process (uid %d): configuration changes "
                    "take effect after a restart", path, os.geteuid())
    state = {"file": settings.file}
    watch = ReloadWatch([path])

    def check() -> None:
        if not watch.due():
            return
        try:
            new = load_config(path)
        except (ConfigError, OSError) as exc:
            log.warning("configuration not reloaded, keeping the running one: %s", exc)
            return
        changes = plan(state["file"], new, settings.pinned)
        if not changes:
            log.warning("configuration re-read: no change")
        for key, change in changes:
            if change is Change.APPLY:
                AGGREGATOR_LIVE[key](agg, new)
            _say(key, change, new)
        state["file"] = new
    return check


def collector_reloader(settings: Settings) -> Callable[[object], None]:
    """A check to run once a second with the collector: re-read the config
    and targets files when they changed (or on SIGHUP) and apply the targets
    to running processes.  A --targets flag (or attach's --pid) pins them."""
    path = settings.config_path
    follow = bool(path) and "targets_file" not in settings.pinned \
        and settings.collector.use_targets
    state = {"targets_file": settings.targets_file}
    watch = ReloadWatch([path, state["targets_file"]])

    def check(col) -> None:
        if not watch.due():
            return
        try:
            if follow:
                state["targets_file"] = load_config(path).targets_file
                watch.set_paths([path, state["targets_file"]])
            col.tracker.reselect(settings.selection(state["targets_file"]))
            log.warning("configuration reloaded: targets applied")
        except (ConfigError, ValueError, OSError) as exc:
            log.warning("configuration not reloaded, keeping the running one: %s", exc)
    return check
