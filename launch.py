"""Start the halves: the collector loop, and `run`'s collector + aggregator child.

The privilege line is the process line: `run` keeps the collector (root) in
this process and starts the aggregator as a child that drops to the
`s3slower` user before it reads a byte from the collector.  The child says
READY=1 on a private notify socket; only then does `run` say `s3slower: ready`.
"""
from __future__ import annotations

import grp
import importlib
import json
import os
import pkgutil
import pwd
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Optional

import click

RUNTIME_DIR = "/run/s3slower"
SERVICE_USER = "s3slower"
CHILD_READY_TIMEOUT_S = 30
# How long `run` gives its aggregator child to leave after the collector's BYE
# (it drains what is queued), and after SIGTERM when there was no BYE.
CHILD_BYE_WAIT_S = 5
CHILD_TERM_WAIT_S = 2
CHILD_DONE = (0, -signal.SIGTERM)       # the child's statuses that are no failure

# What the aggregator may import after it drops root: all of it, imported
# while it can still read the checkout.  A clone in /root (mode 0700) is
# unreadable to the service user, so a lazy import after the drop would fail.
AGGREGATOR_PACKAGES = ("s3slower.aggregator", "s3slower.common")
AGGREGATOR_MODULES = ("s3slower.reload", "s3slower.sdnotify", "s3slower.keys",
                      "zmq.auth.thread")


class LaunchError(RuntimeError):
    """A half could not be started or stopped as it should."""


class ChildExited(LaunchError):
    """The aggregator child of `run` ended on its own."""


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LaunchError(f"{what} needs root (it loads BPF programs); run it with sudo")


def summary(who: str, fields: dict) -> None:
    """One machine-readable line on stderr at exit: what was done and lost."""
    click.echo(f"s3slower {who} stopped: {json.dumps(fields, sort_keys=True)}", err=True)


class StopFlag:
    """Set by SIGINT/SIGTERM; loops poll it."""

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM)):
        self.stopped = False
        for s in signals:
            signal.signal(s, self._set)

    def _set(self, *_):
        self.stopped = True

    def __call__(self) -> bool:
        return self.stopped


# -- directories ------------------------------------------------------------

def runtime_dir(path: str = RUNTIME_DIR) -> None:
    """The ipc directory: root and the s3slower group only (SPEC §7).

    Only a directory of our own is created and tightened; an existing one
    elsewhere (e.g. /tmp for a test's socket) is used as it is."""
    if os.path.isdir(path) and os.path.realpath(path) != RUNTIME_DIR:
        return
    os.makedirs(path, mode=0o750, exist_ok=True)
    try:
        os.chown(path, 0, grp.getgrnam(SERVICE_USER).gr_gid)
    except KeyError:
        pass
    os.chmod(path, 0o750)


def log_dir(path: str) -> None:
    """Create the log directory for the unprivileged aggregator to write."""
    if os.path.isdir(path):
        return
    os.makedirs(path, mode=0o750, exist_ok=True)
    try:
        pw = pwd.getpwnam(SERVICE_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    except KeyError:
        pass


def chgrp(path: str, group: str = SERVICE_USER) -> None:
    try:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    except KeyError:
        pass


# -- the collector ------------------------------------------------------------

def run_collector(endpoint: str, bind: bool, selection, hostname: Optional[str],
                  on_ready, should_stop, *, ringbuf_pages: int = 0, curve=None,
                  record_to=None, buffer_messages: Optional[int] = None,
                  buffer_bytes: Optional[int] = None,
                  reload: Optional[Callable[[object], None]] = None) -> None:
    """Load, attach, drain and publish until should_stop(); `reload(collector)`
    runs once a second."""
    import zmq

    from s3slower.collector import filecache, hostprep
    from s3slower.collector.libraries import LibraryFinder
    from s3slower.collector.probes import DEFAULT_RINGBUF_PAGES, ProgramOptions, Probes
    from s3slower.collector.publisher import (MAX_OUTBOX_BYTES, MAX_OUTBOX_MESSAGES, Publisher,
                                              default_hostname)
    from s3slower.collector.service import Collector

    hostprep.prepare()
    offset = time.time_ns() - time.monotonic_ns()
    publisher = Publisher(zmq.Context.instance(), endpoint, bind=bind,
                          hostname=hostname or default_hostname(), wall_offset_ns=offset,
                          curve=curve, record_to=record_to,
                          max_messages=buffer_messages or MAX_OUTBOX_MESSAGES,
                          max_bytes=buffer_bytes or MAX_OUTBOX_BYTES)
    if bind and endpoint.startswith("ipc://"):
        chgrp(endpoint[len("ipc://"):])
    opts = ProgramOptions(trace_all=selection.trace_all, self_pid=os.getpid(),
                          ringbuf_pages=ringbuf_pages or DEFAULT_RINGBUF_PAGES)
    col = Collector(lambda cb: Probes(opts, cb), publisher, selection,
                    finder=LibraryFinder(filecache.DEFAULT_PATH))
    try:
        col.run(should_stop, on_ready, (lambda: reload(col)) if reload else None)
    finally:
        fields = col.summary()          # the kernel's counts: before the maps go
        col.probes.close()
        publisher.close()
    summary("collector", fields)


# -- run: both halves -----------------------------------------------------------

def run_both(selection, child_args: list[str], *, log_to: Optional[str],
             reload: Optional[Callable[[object], None]] = None) -> None:
    """Collector here, aggregator as an unprivileged child; `child_args` are
    the aggregator options to pass on (besides the endpoint).  Either half
    ending on its own ends both at once, with one line saying which."""
    require_root("s3slower run")
    runtime_dir(RUNTIME_DIR)
    endpoint = f"ipc://{RUNTIME_DIR}/run-{os.getpid()}.sock"
    if log_to:
        log_dir(log_to)
    notify_name = f"\0s3slower-run-{os.getpid()}"
    ready_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ready_sock.bind(notify_name)
    env = dict(os.environ, NOTIFY_SOCKET="@" + notify_name[1:])
    args = [sys.executable, "-m", "s3slower", "aggregator", "--connect", endpoint,
            "--exit-on-bye", "--parent-pid", str(os.getpid()), *child_args]
    if not _user_exists(SERVICE_USER):
        args += ["--user", "nobody"]
    stop = StopFlag()
    state = {"ready": False, "ending": False}
    child = subprocess.Popen(args, env=env, cwd="/")
    watch_child(child, state)

    def ready():
        ready_sock.settimeout(0.5)
        deadline = time.monotonic() + CHILD_READY_TIMEOUT_S
        while True:
            if child.poll() is not None:
                raise ChildExited(_child_ended(child.returncode, False))
            if time.monotonic() > deadline:
                raise LaunchError("the aggregator did not become ready in "
                                  f"{CHILD_READY_TIMEOUT_S} s; run with --debug to see why")
            try:
                if ready_sock.recv(256).strip() == b"READY=1":
                    break
            except socket.timeout:
                pass
        state["ready"] = True
        from s3slower.sdnotify import notify
        notify("READY=1")
        click.echo("s3slower: ready", err=True)
        forward_sighup_to(child)        # it handles SIGHUP once it is ready

    def every_second(col) -> None:
        if reload:
            reload(col)

    said_bye = False
    try:
        run_collector(endpoint, True, selection, None, ready,
                      lambda: stop() or child.poll() is not None,
                      reload=every_second)
        said_bye = True
    finally:
        state["ending"] = True
        _end_child(child, said_bye)
        ready_sock.close()
        try:
            os.unlink(endpoint[len("ipc://"):])
        except OSError:
            pass
    if child.returncode not in (None, *CHILD_DONE):
        raise ChildExited(_child_ended(child.returncode, state["ready"]))


def watch_child(child: subprocess.Popen, state: dict) -> None:
    """SIGCHLD: the aggregator child ending before `run` ends it raises
    ChildExited in the main thread, wherever it is (loading BPF, waiting for
    ready, draining), so `run` stops at once instead of at its next check."""
    def on_child(*_):
        if state["ending"] or child.poll() is None or child.returncode in CHILD_DONE:
            return          # a clean exit: the collector loop sees it and ends
        state["ending"] = True
        raise ChildExited(_child_ended(child.returncode, state["ready"]))
    signal.signal(signal.SIGCHLD, on_child)


def _child_ended(status: int, ready: bool) -> str:
    how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
    when = "" if ready else " before it was ready"
    return f"the aggregator {how}{when} (its own message is above; --debug shows more)"


def forward_sighup_to(child: subprocess.Popen) -> None:
    """SIGHUP (re-read the configuration) reaches both halves of `run`."""
    from s3slower.reload import on_sighup
    previous = signal.getsignal(signal.SIGHUP)

    def forward():
        if child.poll() is None:
            child.send_signal(signal.SIGHUP)
        if callable(previous):
            previous(signal.SIGHUP, None)
    on_sighup(forward)


def _end_child(child: subprocess.Popen, said_bye: bool) -> None:
    """After our BYE the child drains and leaves by itself; without one (the
    collector failed) it is told to stop at once."""
    if child.poll() is not None:
        return
    if said_bye:
        try:
            child.wait(timeout=CHILD_BYE_WAIT_S)
            return
        except subprocess.TimeoutExpired:
            pass
    child.terminate()
    try:
        child.wait(timeout=CHILD_TERM_WAIT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def preload_aggregator() -> None:
    """Import every module the aggregator may need later (AGGREGATOR_PACKAGES)."""
    for name in AGGREGATOR_MODULES:
        importlib.import_module(name)
    for package in AGGREGATOR_PACKAGES:
        path = importlib.import_module(package).__path__
        for info in pkgutil.iter_modules(path, package + "."):
            importlib.import_module(info.name)


def drop_privileges(user: str, allow_root: bool) -> None:
    if os.geteuid() != 0 or allow_root:
        return
    preload_aggregator()
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise LaunchError(f"the aggregator will not run as root and user {user!r} does not "
                          "exist; create it (make dev does) or pass --allow-root") from None
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
