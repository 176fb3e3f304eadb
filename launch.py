"""Start the halves from their settings: the collector, the aggregator, and
`run`'s collector + aggregator child.

The privilege line is the process line: `run` keeps the collector (root) in
this process and starts the aggregator as a child that drops to the
`s3slower` user before it reads a byte from the collector.  The child says
READY=1 on a private notify socket; only then does `run` say `s3slower: ready`.
"""
from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from typing import Callable, Optional

import click

from s3slower import preload
from s3slower.common.settings import SERVICE_USER, AggregatorSettings, Settings
from s3slower.common.settings import to_json as settings_json
from s3slower.reload import aggregator_reloader, collector_reloader

log = logging.getLogger("s3slower")
RUNTIME_DIR = "/run/s3slower"
CHILD_READY_TIMEOUT_S = 30
# How long `run` gives its aggregator child to leave after the collector's BYE
# (it drains what is queued), and after SIGTERM when there was no BYE.
CHILD_BYE_WAIT_S = 5
CHILD_TERM_WAIT_S = 2
CHILD_DONE = (0, -signal.SIGTERM)       # the child's statuses that are no failure


class LaunchError(RuntimeError):
    """A half could not be started or stopped as it should."""


class ChildExited(LaunchError):
    """The aggregator child of `run` ended on its own."""


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LaunchError(f"{what} needs root (it loads BPF programs); run it with sudo")


def need_terminal(output: str) -> None:
    """`--output top` draws on a terminal: say so at once when stdout is none."""
    if output == "top" and not os.isatty(1):
        raise LaunchError("--output top needs a terminal and stdout is not one; "
                          "use --output table, simple or json")


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


# -- the collector ------------------------------------------------------------

def start_collector(settings: Settings) -> None:
    """`s3slower collector`: check what it was given, then run it (as root)."""
    from s3slower.keys import collector_curve
    c, t = settings.collector, settings.config.transport
    if not c.bind and not c.connects:
        connects = t.endpoints or ((t.endpoint,) if t.endpoint else ())
        settings = replace(settings, collector=replace(c, connects=connects))
        c = settings.collector
    if bool(c.bind) == bool(c.connects):
        raise click.UsageError("give exactly one of --bind or --connect")
    if len(set(c.connects)) != len(c.connects):
        raise click.UsageError("an aggregator endpoint is given twice to --connect")
    curve = None
    for ep in (c.bind,) if c.bind else c.connects:
        curve = collector_curve(ep, t.curve_secret_key, t.curve_server_key, c.insecure)
    selection = settings.selection(settings.targets_file)
    require_root("the collector")
    if c.bind and c.bind.startswith("ipc://"):
        runtime_dir(os.path.dirname(c.bind[len("ipc://"):]))

    def ready():
        from s3slower.sdnotify import notify
        notify("READY=1")
        click.echo("s3slower collector: ready", err=True)

    record_to = None
    if c.record_path:
        fd = os.open(c.record_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        record_to = os.fdopen(fd, "wb")
    run_collector(settings, selection, ready, StopFlag(), curve=curve, record_to=record_to,
                  reload=collector_reloader(settings))


def run_collector(settings: Settings, selection, on_ready, should_stop, *, curve=None,
                  record_to=None, reload: Optional[Callable[[object], None]] = None) -> None:
    """Load, attach, drain and publish until should_stop(); `reload(collector)`
    runs once a second."""
    from s3slower.collector.build import build

    col = build(settings, selection, curve=curve, record_to=record_to,
                socket_group=SERVICE_USER)
    publisher = col.publisher
    try:
        col.run(should_stop, on_ready, (lambda: reload(col)) if reload else None)
    finally:
        fields = col.summary()          # the kernel's counts: before the maps go
        col.probes.close()
        publisher.close()
    summary("collector", fields)


# -- the aggregator -------------------------------------------------------------

def run_aggregator(settings: Settings) -> None:
    """`s3slower aggregator` (and run's child): read what needs root, drop it,
    then subscribe (or replay) and output until stopped."""
    import zmq

    from s3slower.aggregator.build import build
    from s3slower.aggregator.subscriber import Subscriber
    from s3slower.common.config import label_keys, load_targets
    from s3slower.keys import aggregator_curve

    need_terminal(settings.config.output)
    a, t = settings.aggregator, settings.config.transport
    if settings.file.prometheus.buffer_size is not None:
        log.warning("%s: prometheus.buffer_size is deprecated and ignored (metrics are read "
                    "when scraped); remove it", settings.config_path)
    binds = a.binds
    if not (a.connects or binds or a.replay_path) and t.endpoint:
        binds = (t.endpoint,)
    if bool(a.connects) + bool(binds) + bool(a.replay_path) != 1:
        raise click.UsageError("give one of --connect, --bind or --replay")
    endpoints = list(a.connects or binds)
    curve = aggregator_curve(endpoints, t.curve_secret_key, t.allowed_keys_dir, a.insecure)
    extra_labels = label_keys(load_targets(settings.config.targets_file))
    c = settings.config
    for key, flag, on in (("container_id", "--container-label", c.container_label),
                          ("client", "--client-label", c.client_label)):
        if on and key in extra_labels:
            raise click.UsageError(f"a target's prom_labels key {key} collides with {flag}; "
                                   "rename that key")
    replay_file = open(a.replay_path, "rb") if a.replay_path else None   # before dropping root
    if settings.config.otlp.enabled:
        from s3slower.aggregator.otlp import load_exporters
        load_exporters(settings.config.otlp.protocol)
    drop_privileges(a.user, a.allow_root)
    if replay_file:
        from s3slower.aggregator.replay import replay
        agg, outputs = build(settings, None, extra_labels)
        with replay_file:
            try:
                replay(replay_file, agg)
            finally:
                outputs.close()
        _aggregator_summary(agg, 0)
        return
    if a.exit_on_bye:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides
    stop = StopFlag(signals=(signal.SIGTERM,) if a.exit_on_bye
                    else (signal.SIGINT, signal.SIGTERM))
    sub = Subscriber(zmq.Context.instance(), endpoints, bind=bool(binds), curve=curve)
    agg, outputs = build(settings, sub, extra_labels)

    def should_stop() -> bool:
        if stop() or (a.exit_on_bye and agg.byes > 0):
            return True
        return bool(a.parent_pid) and os.getppid() != a.parent_pid

    def ready():
        from s3slower.sdnotify import notify
        notify("READY=1")
        if not a.exit_on_bye:   # under `run`, the parent says ready for both
            click.echo("s3slower aggregator: ready", err=True)

    try:
        agg.run(should_stop, ready, aggregator_reloader(settings, agg))
    finally:
        sub.close()
        outputs.close()
    _aggregator_summary(agg, sub.refused())


def _aggregator_summary(agg, refused: int) -> None:
    """Read after the outputs closed: what closing could not deliver counts too."""
    from s3slower.aggregator.ledger import stop_summary
    snap = agg.book.snapshot(agg.pipeline.statistics())
    summary("aggregator", {**stop_summary(snap), "collectors_refused": refused})


# -- run: both halves -----------------------------------------------------------

def run_both(settings: Settings, selection) -> None:
    """Collector here, aggregator as an unprivileged child that is handed
    these settings (its endpoint and run's own options put in).  Either half
    ending on its own ends both at once, with one line saying which."""
    need_terminal(settings.config.output)
    reload = collector_reloader(settings)
    require_root("s3slower run")
    runtime_dir(RUNTIME_DIR)
    endpoint = f"ipc://{RUNTIME_DIR}/run-{os.getpid()}.sock"
    log = settings.config.log
    if log.enabled:
        log_dir(log.dir)
    notify_name = f"\0s3slower-run-{os.getpid()}"
    ready_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ready_sock.bind(notify_name)
    env = dict(os.environ, NOTIFY_SOCKET="@" + notify_name[1:])
    args = child_command(settings, endpoint, os.getpid(), os.getcwd(),
                         SERVICE_USER if _user_exists(SERVICE_USER) else "nobody")
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

    said_bye = False
    try:
        run_collector(replace(settings, collector=replace(settings.collector, bind=endpoint)),
                      selection, ready, lambda: stop() or child.poll() is not None,
                      reload=reload)
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


def child_command(settings: Settings, endpoint: str, parent_pid: int, cwd: str,
                  user: str) -> list[str]:
    """run's aggregator child: these settings (paths made absolute: it works
    in /), with its endpoint and the options only run's child has."""
    child = replace(settings.absolute(cwd), aggregator=AggregatorSettings(
        connects=(endpoint,), exit_on_bye=True, parent_pid=parent_pid, user=user))
    return [sys.executable, "-m", "s3slower", "aggregator", "--settings", settings_json(child)]


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


def drop_privileges(user: str, allow_root: bool) -> None:
    if os.geteuid() != 0 or allow_root:
        return
    preload.preload_aggregator()
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise LaunchError(f"the aggregator will not run as root and user {user!r} does not "
                          "exist; create it (make dev does) or pass --allow-root") from None
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
