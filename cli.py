"""Command line (click): run, attach, collector, aggregator, version.

Errors become exit codes here, at the edge: every expected failure is one
sentence on stderr and a non-zero status; `--debug` adds the traceback.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from typing import Optional

import click

from s3slower import __version__

EXIT_ERROR = 1
EXIT_USAGE = 2
RUNTIME_DIR = "/run/s3slower"
SERVICE_USER = "s3slower"
CHILD_READY_TIMEOUT_S = 30


class CliError(Exception):
    """An expected failure: its message is the one sentence the user sees."""


def _fail(exc: BaseException) -> None:
    if os.environ.get("S3SLOWER_TRACEBACK") or "--debug" in sys.argv or "--traceback" in sys.argv:
        traceback.print_exception(exc)
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    click.echo(f"s3slower: {msg}", err=True)
    sys.exit(EXIT_ERROR)


class Cli(click.Group):
    def invoke(self, ctx):
        from s3slower.collector.hostprep import HostPrepError
        from s3slower.collector.probes import ProbeError
        from s3slower.common.config import ConfigError
        from s3slower.common.recording import RecordingError
        from s3slower.keys import KeyFileError
        try:
            return super().invoke(ctx)
        except (CliError, ProbeError, HostPrepError, ConfigError, RecordingError,
                KeyFileError, OSError) as exc:
            _fail(exc)
        except Exception as exc:  # zmq and others: still one line, never a bare trace
            if exc.__class__.__module__.startswith("zmq"):
                _fail(exc)
            raise


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="s3slower")
def cli() -> None:
    """eBPF tracer of S3 request latency as the client sees it."""


@cli.command()
def version() -> None:
    """Print version information."""
    click.echo(f"s3slower {__version__}")


@cli.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to write the key pair into.")
@click.option("--name", required=True, help="Key name: writes NAME.key and NAME.key_secret.")
def keygen(out_dir, name):
    """Create a CurveZMQ key pair for the collector/aggregator link."""
    import zmq.auth
    if not name or "/" in name:
        raise click.BadParameter("a plain file name", param_hint="--name")
    os.makedirs(out_dir, exist_ok=True)
    for suffix in (".key", ".key_secret"):
        if os.path.exists(os.path.join(out_dir, name + suffix)):
            raise CliError(f"{os.path.join(out_dir, name + suffix)} exists; not overwriting it")
    public, secret = zmq.auth.create_certificates(out_dir, name)
    os.chmod(secret, 0o600)
    click.echo(f"wrote {public} (public) and {secret} (secret)")


def _is_network(endpoint: str) -> bool:
    return not endpoint.startswith(("ipc://", "inproc://"))


# --------------------------------------------------------------------------
# shared option sets

def _split(values) -> tuple[str, ...]:
    out: list[str] = []
    for v in values or ():
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return tuple(out)


def _selection_options(f):
    f = click.option("--pid", "pids", type=int, multiple=True, help="Trace only this process (repeatable).")(f)
    f = click.option("--watch", multiple=True, help="Process names to watch (e.g. mc,warp).")(f)
    f = click.option("--targets", "targets_file", type=click.Path(dir_okay=False),
                     help="targets.yml: trace only the processes it matches.")(f)
    f = click.option("--mode", type=click.Choice(["auto", "http", "openssl", "gnutls", "nss", "go"]),
                     default="auto", show_default=True, help="Probe mode.")(f)
    return f


def _output_options(f):
    f = click.option("--output", type=click.Choice(["table", "simple", "json", "none"]),
                     default="table", show_default=True, help="Terminal output format.")(f)
    f = click.option("--min-latency", type=click.FloatRange(min=0), default=0, show_default=True,
                     help="Minimum latency in ms to report.")(f)
    f = click.option("--prometheus", is_flag=True, help="Enable Prometheus exporter.")(f)
    f = click.option("-p", "--port", type=click.IntRange(0, 65535), default=9000, show_default=True,
                     help="Prometheus exporter port.")(f)
    f = click.option("--host", default="::", show_default=True, help="Prometheus exporter host.")(f)
    f = click.option("--log-dir", default="/var/log/s3slower", show_default=True, help="Log directory.")(f)
    f = click.option("--log-max-size", type=click.IntRange(min=1), default=100, show_default=True,
                     help="Max log size in MB before rotation.")(f)
    f = click.option("--no-log", is_flag=True, help="Disable file logging.")(f)
    f = click.option("-C", "--config", "config_path", type=click.Path(dir_okay=False),
                     help="Path to config file.")(f)
    f = click.option("--debug", is_flag=True, help="Enable debug output (and tracebacks).")(f)
    return f


def _selection(pids, watch, targets_file):
    from s3slower.common.config import load_targets
    from s3slower.common.targets import Selection
    targets = load_targets(targets_file) if targets_file else ()
    return Selection.build(pids=pids, watch=_split(watch), targets=targets)


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise CliError(f"{what} needs root (it loads BPF programs); run it with sudo")


# --------------------------------------------------------------------------
# collector

def _run_collector(endpoint: str, bind: bool, selection, hostname: Optional[str],
                   on_ready, should_stop, ringbuf_pages: int = 0,
                   curve=None, group: Optional[str] = None, record_to=None,
                   buffer_messages: Optional[int] = None,
                   buffer_bytes: Optional[int] = None) -> None:
    import zmq

    from s3slower.collector import hostprep
    from s3slower.collector.probes import DEFAULT_RINGBUF_PAGES, ProgramOptions, Probes
    from s3slower.collector.publisher import (MAX_OUTBOX_BYTES, MAX_OUTBOX_MESSAGES, Publisher,
                                              default_hostname)
    from s3slower.collector.service import Collector

    hostprep.prepare()
    ctx = zmq.Context.instance()
    offset = time.time_ns() - time.monotonic_ns()
    publisher = Publisher(ctx, endpoint, bind=bind, hostname=hostname or default_hostname(),
                          wall_offset_ns=offset, curve=curve, record_to=record_to,
                          max_messages=buffer_messages or MAX_OUTBOX_MESSAGES,
                          max_bytes=buffer_bytes or MAX_OUTBOX_BYTES)
    if bind and endpoint.startswith("ipc://") and group:
        _chgrp(endpoint[len("ipc://"):], group)
    opts = ProgramOptions(trace_all=selection.trace_all, self_pid=os.getpid(),
                          ringbuf_pages=ringbuf_pages or DEFAULT_RINGBUF_PAGES)
    col = Collector(lambda cb: Probes(opts, cb), publisher, selection)
    try:
        col.run(should_stop, on_ready)
    finally:
        lost = col.probes.lost_counts()
        col.probes.close()
        publisher.close()
    lost["collector_outbox"] = publisher.statistics().dropped_events
    _summary("collector", {**asdict(col.statistics()), **asdict(publisher.statistics()),
                           "lost": lost})


def _chgrp(path: str, group: str) -> None:
    import grp
    try:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    except KeyError:
        pass


def _summary(who: str, fields: dict) -> None:
    """One machine-readable line on stderr at exit: what was done and lost."""
    import json
    click.echo(f"s3slower {who} stopped: {json.dumps(fields, sort_keys=True)}", err=True)


class _StopFlag:
    """Set by SIGINT/SIGTERM; loops poll it."""

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM)):
        self.stopped = False
        for s in signals:
            signal.signal(s, self._set)

    def _set(self, *_):
        self.stopped = True

    def __call__(self) -> bool:
        return self.stopped


@cli.command()
@click.option("--bind", help="Endpoint to bind (local: ipc:///run/s3slower/collector.sock).")
@click.option("--connect", help="Aggregator endpoint to connect to (tcp://HOST:5556).")
@click.option("--hostname", help="Host name the records carry (default: this host's).")
@click.option("--curve-secret-key", type=click.Path(exists=True, dir_okay=False),
              help="This collector's CurveZMQ .key_secret file.")
@click.option("--curve-server-key", type=click.Path(exists=True, dir_okay=False),
              help="The aggregator's public .key file.")
@click.option("--insecure", is_flag=True, help="Allow plain TCP without CurveZMQ.")
@_selection_options
@click.option("--buffer-messages", type=click.IntRange(min=1), default=None,
              help="Messages held while the aggregator is away (default 20000).")
@click.option("--buffer-mb", type=click.IntRange(min=1), default=None,
              help="Megabytes held while the aggregator is away (default 128).")
@click.option("--record", "record_path", type=click.Path(dir_okay=False),
              help="Also write every published message to this file (mode 0600).")
@click.option("--ringbuf-pages", type=int, default=0, hidden=True)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def collector(bind, connect, hostname, curve_secret_key, curve_server_key, insecure, pids,
              watch, targets_file, mode, buffer_messages, buffer_mb, record_path,
              ringbuf_pages, debug):
    """The privileged half: load BPF, attach, publish events."""
    from s3slower.keys import collector_curve
    if bool(bind) == bool(connect):
        raise click.UsageError("give exactly one of --bind or --connect")
    endpoint = bind or connect
    curve = collector_curve(endpoint, curve_secret_key, curve_server_key, insecure)
    _require_root("the collector")
    if bind and bind.startswith("ipc://"):
        _runtime_dir(os.path.dirname(bind[len("ipc://"):]))
    stop = _StopFlag()

    def ready():
        from s3slower.sdnotify import notify
        notify("READY=1")
        click.echo("s3slower collector: ready", err=True)

    record_to = None
    if record_path:
        fd = os.open(record_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        record_to = os.fdopen(fd, "wb")
    _run_collector(endpoint, bool(bind), _selection(pids, watch, targets_file), hostname,
                   ready, stop, ringbuf_pages, curve=curve, group=SERVICE_USER,
                   record_to=record_to, buffer_messages=buffer_messages,
                   buffer_bytes=buffer_mb * 1024 * 1024 if buffer_mb else None)


# --------------------------------------------------------------------------
# aggregator

def _drop_privileges(user: str, allow_root: bool) -> None:
    import pwd
    if os.geteuid() != 0:
        return
    if allow_root:
        return
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise CliError(f"the aggregator will not run as root and user {user!r} does not "
                       "exist; create it (make dev does) or pass --allow-root") from None
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


@cli.command()
@click.option("--connect", "connects", multiple=True, help="Collector endpoint(s) to connect to.")
@click.option("--bind", "binds", multiple=True, help="Endpoint(s) collectors connect to.")
@_output_options
@click.option("--curve-secret-key", type=click.Path(exists=True, dir_okay=False),
              help="The aggregator's CurveZMQ .key_secret file (server key).")
@click.option("--allowed-keys", type=click.Path(exists=True, file_okay=False),
              help="Directory of allowed collectors' public .key files.")
@click.option("--insecure", is_flag=True, help="Allow plain TCP without CurveZMQ.")
@click.option("--user", default=SERVICE_USER, show_default=True,
              help="Unprivileged user to become when started as root.")
@click.option("--allow-root", is_flag=True, help="Keep running as root.")
@click.option("--replay", "replay_path", type=click.Path(exists=True, dir_okay=False),
              help="Replay a `collector --record` file instead of subscribing.")
@click.option("--exit-on-bye", is_flag=True, hidden=True)
@click.option("--parent-pid", type=int, default=0, hidden=True)
def aggregator(connects, binds, output, min_latency, prometheus, port, host, log_dir,
               log_max_size, no_log, config_path, debug, curve_secret_key, allowed_keys,
               insecure, user, allow_root, replay_path, exit_on_bye, parent_pid):
    """The unprivileged half: decode, parse, correlate, output."""
    import zmq

    from s3slower.aggregator.outputs import OutputOptions, build_sinks
    from s3slower.aggregator.pipeline import Pipeline
    from s3slower.aggregator.service import Aggregator
    from s3slower.aggregator.subscriber import Subscriber

    if bool(connects) + bool(binds) + bool(replay_path) != 1:
        raise click.UsageError("give one of --connect, --bind or --replay")
    import logging
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="s3slower: %(message)s")
    from s3slower.keys import aggregator_curve
    curve = aggregator_curve(list(connects or binds), curve_secret_key, allowed_keys, insecure)
    replay_file = open(replay_path, "rb") if replay_path else None  # before dropping root
    _drop_privileges(user, allow_root)
    opts = OutputOptions(output=output, prometheus=prometheus, prom_host=host, prom_port=port,
                         log_dir=None if no_log else log_dir, log_max_size_mb=log_max_size)
    if replay_file:
        from s3slower.aggregator.replay import replay
        with replay_file:
            replay(replay_file, Aggregator(None, Pipeline(), build_sinks(opts),
                                           min_latency_ms=min_latency))
        return
    if exit_on_bye:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides
    stop = _StopFlag(signals=(signal.SIGTERM,) if exit_on_bye else (signal.SIGINT, signal.SIGTERM))
    sub = Subscriber(zmq.Context.instance(), list(connects or binds), bind=bool(binds),
                     curve=curve)
    agg = Aggregator(sub, Pipeline(), build_sinks(opts), min_latency_ms=min_latency)

    def should_stop() -> bool:
        if stop():
            return True
        if exit_on_bye and agg.byes > 0:
            return True
        return bool(parent_pid) and os.getppid() != parent_pid

    def ready():
        from s3slower.sdnotify import notify
        notify("READY=1")
        if not exit_on_bye:   # under `run`, the parent says ready for both
            click.echo("s3slower aggregator: ready", err=True)

    try:
        agg.run(should_stop, ready)
    finally:
        sub.close()
    st = agg.pipeline.statistics()
    _summary("aggregator", {"messages": st.messages, "events": st.events, "records": st.records,
                            "errors": st.errors, "lost": st.lost,
                            "collectors_refused": sub.refused()})


# --------------------------------------------------------------------------
# run / attach: both halves on one host

def _runtime_dir(path: str) -> None:
    import grp
    os.makedirs(path, mode=0o750, exist_ok=True)
    try:
        os.chown(path, 0, grp.getgrnam(SERVICE_USER).gr_gid)
    except KeyError:
        pass
    os.chmod(path, 0o750)


def _child_args(endpoint: str, opts: dict) -> list[str]:
    args = [sys.executable, "-m", "s3slower", "aggregator", "--connect", endpoint,
            "--output", opts["output"], "--min-latency", str(opts["min_latency"]),
            "--exit-on-bye", "--parent-pid", str(os.getpid())]
    if opts["prometheus"]:
        args += ["--prometheus", "--port", str(opts["port"]), "--host", opts["host"]]
    if opts["no_log"]:
        args.append("--no-log")
    else:
        args += ["--log-dir", opts["log_dir"], "--log-max-size", str(opts["log_max_size"])]
    if opts.get("config_path"):
        args += ["--config", opts["config_path"]]
    if opts["debug"]:
        args.append("--debug")
    try:
        import pwd
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        args += ["--user", "nobody"]
    return args


def _run_both(selection, opts: dict) -> None:
    _require_root("s3slower run")
    _runtime_dir(RUNTIME_DIR)
    endpoint = f"ipc://{RUNTIME_DIR}/run-{os.getpid()}.sock"
    if not opts["no_log"]:
        _log_dir(opts["log_dir"])
    notify_name = f"\0s3slower-run-{os.getpid()}"
    ready_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ready_sock.bind(notify_name)
    env = dict(os.environ, NOTIFY_SOCKET="@" + notify_name[1:])
    child = subprocess.Popen(_child_args(endpoint, opts), env=env, cwd="/")
    stop = _StopFlag()

    def ready():
        ready_sock.settimeout(CHILD_READY_TIMEOUT_S)
        try:
            while ready_sock.recv(256).strip() != b"READY=1":
                pass
        except socket.timeout:
            raise CliError("the aggregator did not become ready") from None
        from s3slower.sdnotify import notify
        notify("READY=1")
        click.echo("s3slower: ready", err=True)

    def should_stop() -> bool:
        return stop() or child.poll() is not None

    try:
        _run_collector(endpoint, True, selection, None, ready, should_stop,
                       group=SERVICE_USER)
    finally:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.terminate()
            child.wait(timeout=5)
        ready_sock.close()
        try:
            os.unlink(endpoint[len("ipc://"):])
        except OSError:
            pass
    if child.returncode not in (0, None, -signal.SIGTERM):
        raise CliError(f"the aggregator exited with status {child.returncode}")


def _log_dir(path: str) -> None:
    import pwd
    os.makedirs(path, mode=0o750, exist_ok=True)
    try:
        pw = pwd.getpwnam(SERVICE_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    except KeyError:
        pass


@cli.command()
@_output_options
@_selection_options
def run(pids, watch, targets_file, mode, **opts):
    """Run the tracer on this host (collector + unprivileged aggregator)."""
    _run_both(_selection(pids, watch, targets_file), opts)


@cli.command()
@click.option("--pid", type=int, required=True, help="Process ID to attach to.")
@click.option("--mode", type=click.Choice(["auto", "http", "openssl", "gnutls", "nss", "go"]),
              default="auto", show_default=True, help="Probe mode.")
@_output_options
def attach(pid, mode, **opts):
    """Attach to a specific process (and its threads)."""
    if not os.path.exists(f"/proc/{pid}"):
        raise CliError(f"no process with pid {pid}")
    _run_both(_selection((pid,), (), None), opts)


def main() -> None:
    cli(prog_name="s3slower")
