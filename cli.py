"""Command line (click): run, attach, collector, aggregator, keygen, version.

Configuration the documented click way: `-C/--config` is eager and loads the
file into the command's `default_map`, so every flag given on the command
line wins over the file and the file wins over the built-in defaults.
Errors become exit codes here, at the edge: every expected failure is one
sentence on stderr and a non-zero status; `--debug` adds the traceback.
"""
from __future__ import annotations

import enum
import logging
import os
import signal
import sys
import traceback
from typing import Optional

import click
from click.core import ParameterSource

from s3slower import __version__
from s3slower import launch

class ExitStatus(enum.IntEnum):
    """What the process exit status means (click itself exits 2 on bad usage)."""
    OK = 0
    ERROR = 1           # an expected failure, said in one sentence
    USAGE = 2
    INTERNAL = 70       # a bug (EX_SOFTWARE): the one line says so


log = logging.getLogger("s3slower")


def _debug() -> bool:
    return bool(os.environ.get("S3SLOWER_TRACEBACK")) or bool({"--debug", "--traceback"}
                                                                & set(sys.argv))


def _fail(exc: BaseException, status: ExitStatus = ExitStatus.ERROR) -> None:
    if _debug():
        traceback.print_exception(exc)
    text = str(exc).strip()
    text = text.splitlines()[0] if text else exc.__class__.__name__
    if status == ExitStatus.INTERNAL:
        text = (f"internal error, please report it: {exc.__class__.__name__}: {text}"
                + ("" if _debug() else " (--debug shows the traceback)"))
    click.echo(f"s3slower: {text}", err=True)
    sys.exit(status)


class Cli(click.Group):
    def invoke(self, ctx):
        from s3slower.collector.hostprep import HostPrepError
        from s3slower.collector.probes import ProbeError
        from s3slower.common.config import ConfigError
        from s3slower.common.recording import RecordingError
        from s3slower.keys import KeyFileError
        try:
            return super().invoke(ctx)
        except (launch.LaunchError, ProbeError, HostPrepError, ConfigError, RecordingError,
                KeyFileError, OSError) as exc:
            _fail(exc)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise                 # click says these itself
        except Exception as exc:  # zmq errors: still one line, never a bare trace
            if exc.__class__.__module__.startswith("zmq"):
                _fail(exc)
            _fail(exc, ExitStatus.INTERNAL)


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
            raise launch.LaunchError(f"{os.path.join(out_dir, name + suffix)} exists; "
                                     "not overwriting it")
    public, secret = zmq.auth.create_certificates(out_dir, name)
    os.chmod(secret, 0o600)
    click.echo(f"wrote {public} (public) and {secret} (secret)")


# --------------------------------------------------------------------------
# configuration

def _load_config(ctx: click.Context, _param, value: Optional[str]):
    """Eager: read the file (or the default one, if present) into default_map."""
    from s3slower.common.config import DEFAULT_CONFIG_PATH, default_map, load_config
    cfg = load_config(value or DEFAULT_CONFIG_PATH)
    ctx.default_map = {**default_map(cfg), **(ctx.default_map or {})}
    ctx.meta["config"] = cfg
    ctx.meta["config_path"] = value or (DEFAULT_CONFIG_PATH
                                        if os.path.exists(DEFAULT_CONFIG_PATH) else None)
    return value


def _config_option(f):
    return click.option("-C", "--config", "config_path", type=click.Path(dir_okay=False),
                        is_eager=True, expose_value=True, callback=_load_config,
                        help="Path to config file (default /etc/s3slower/s3slower.yaml "
                             "if it exists).")(f)


def _explicit(ctx: click.Context) -> set[str]:
    """Names of the parameters given on the command line."""
    return {p.name for p in ctx.command.params
            if ctx.get_parameter_source(p.name) == ParameterSource.COMMANDLINE}


def _split(values) -> tuple[str, ...]:
    out: list[str] = []
    for v in values or ():
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return tuple(out)


# --------------------------------------------------------------------------
# option sets

MODES = ["auto", "http", "openssl", "gnutls", "nss", "go"]


def _selection_options(f):
    f = click.option("--pid", "pids", type=int, multiple=True,
                     help="Trace only this process (repeatable).")(f)
    f = click.option("--watch", multiple=True, help="Process names to watch (e.g. mc,warp).")(f)
    f = click.option("--targets", "targets_file", type=click.Path(dir_okay=False),
                     help="targets.yml: trace only the processes it matches.")(f)
    f = click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True,
                     help="Probe mode: which TLS libraries to probe (http: none).")(f)
    return f


# Options the aggregator takes and `run` passes on to its aggregator child.
def _output_options(f):
    opts = [
        click.option("--output", type=click.Choice(["table", "simple", "json", "none"]),
                     default="table", show_default=True, help="Terminal output format."),
        click.option("--min-latency", type=click.FloatRange(min=0), default=0,
                     show_default=True, help="Minimum latency in ms to report."),
        click.option("--prometheus", is_flag=True, help="Enable Prometheus exporter."),
        click.option("-p", "--port", type=click.IntRange(0, 65535), default=9000,
                     show_default=True, help="Prometheus exporter port."),
        click.option("--host", default="::", show_default=True,
                     help="Prometheus exporter host."),
        click.option("--interval", type=click.FloatRange(min=0.1), default=5.0,
                     show_default=True, help="Collection interval (s) of the min/max gauges."),
        click.option("--max-buckets", type=click.IntRange(min=1), default=1000,
                     show_default=True,
                     help="Bucket label values in metrics, __other__ (the rest) included."),
        click.option("--container-label", is_flag=True,
                     help="Add a container_id label to the request metrics."),
        click.option("--max-url-length", type=click.IntRange(min=8), default=50,
                     show_default=True, help="KEY column truncation length."),
        click.option("--path-style-endpoint", "path_style_endpoints", multiple=True,
                     help="Host of an S3 endpoint addressed path style (repeatable)."),
        click.option("--log-dir", default="/var/log/s3slower", show_default=True,
                     help="Log directory."),
        click.option("--log-max-size", type=click.IntRange(min=1), default=100,
                     show_default=True, help="Max log size in MB before rotation."),
        click.option("--log-max-backups", type=click.IntRange(min=0), default=5,
                     show_default=True, help="Rotated log files kept."),
        click.option("--no-log", is_flag=True, help="Disable file logging."),
        click.option("--debug", is_flag=True, help="Enable debug output (and tracebacks)."),
        _config_option,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


CHILD_PARAMS = ("output", "min_latency", "prometheus", "port", "host", "interval",
                "max_buckets", "max_url_length", "path_style_endpoints", "log_dir",
                "log_max_size", "log_max_backups", "no_log", "debug", "config_path",
                "targets_file", "container_label")


def _child_args(ctx: click.Context) -> list[str]:
    """The explicit options of `run`/`attach` that the aggregator child takes;
    the child reads the same config file itself (before dropping root)."""
    explicit = _explicit(ctx)
    args: list[str] = []
    for p in ctx.command.params:
        if p.name not in CHILD_PARAMS or p.name not in explicit:
            continue
        flag = max(p.opts, key=len)
        value = ctx.params[p.name]
        if getattr(p, "is_flag", False):
            args += [flag] if value else []
        elif getattr(p, "multiple", False):
            for v in value:
                args += [flag, str(v)]
        else:
            args += [flag, str(value)]
    return args


def _targets(targets_file):
    from s3slower.common.config import load_targets
    return load_targets(targets_file) if targets_file else ()


def _selection(pids, watch, targets_file, mode="auto"):
    from s3slower.common.targets import Selection
    return Selection.build(pids=pids, watch=_split(watch), targets=_targets(targets_file),
                           mode=mode)


def _collector_reloader(ctx: click.Context, pids, watch, mode):
    """Once a second: re-read the config and targets files if they changed (or
    on SIGHUP) and apply the new targets to running processes."""
    from s3slower.common.config import ConfigError, load_config
    from s3slower.reload import ReloadWatch
    path = ctx.meta.get("config_path")
    explicit_targets = "targets_file" in _explicit(ctx)
    state = {"targets_file": ctx.params.get("targets_file")}
    watch_files = ReloadWatch([path, state["targets_file"]])

    def check(col) -> None:
        if not watch_files.due():
            return
        try:
            if path and not explicit_targets:
                state["targets_file"] = load_config(path).targets_file
                watch_files.set_paths([path, state["targets_file"]])
            col.tracker.reselect(_selection(pids, watch, state["targets_file"], mode))
            log.warning("configuration reloaded: targets applied")
        except (ConfigError, ValueError, OSError) as exc:
            log.warning("configuration not reloaded, keeping the running one: %s", exc)
    return check


def _aggregator_reloader(ctx: click.Context, agg):
    from s3slower.common.config import ConfigError, changed_keys, load_config
    from s3slower.reload import ReloadWatch, on_sighup
    path = ctx.meta.get("config_path")
    if not path:
        on_sighup(lambda: log.warning("SIGHUP: no configuration file to re-read"))
        return None
    if not os.access(path, os.R_OK):        # after dropping root: as the service user
        log.warning("%s is not readable by this process (uid %d): configuration changes "
                    "take effect after a restart", path, os.geteuid())
    explicit = _explicit(ctx)
    state = {"config": ctx.meta["config"]}
    watch = ReloadWatch([path])
    live = {"min_latency_ms": ("min_latency", lambda c: agg.set_min_latency(c.min_latency_ms))}

    def check() -> None:
        if not watch.due():
            return
        try:
            new = load_config(path)
        except (ConfigError, OSError) as exc:
            log.warning("configuration not reloaded, keeping the running one: %s", exc)
            return
        changed = changed_keys(state["config"], new)
        if not changed:
            log.warning("configuration re-read: no change")
        for key in changed:
            param, apply = live.get(key, (None, None))
            if apply and param not in explicit:
                apply(new)
                log.warning("configuration reloaded: %s = %s", key, _dotted(new, key))
            elif apply:
                log.warning("configuration: %s changed but --%s on the command line wins",
                            key, param.replace("_", "-"))
            else:
                log.warning("configuration: %s changed; it takes effect after a restart", key)
        state["config"] = new
    return check


def _dotted(obj, key: str):
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="s3slower: %(message)s")


# --------------------------------------------------------------------------
# collector

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
@_config_option
@click.pass_context
def collector(ctx, bind, connect, hostname, curve_secret_key, curve_server_key, insecure,
              pids, watch, targets_file, mode, buffer_messages, buffer_mb, record_path,
              ringbuf_pages, debug, config_path):
    """The privileged half: load BPF, attach, publish events."""
    from s3slower.keys import collector_curve
    _logging(debug)
    if not bind and not connect:
        connect = ctx.meta["config"].transport.endpoint
    if bool(bind) == bool(connect):
        raise click.UsageError("give exactly one of --bind or --connect")
    endpoint = bind or connect
    curve = collector_curve(endpoint, curve_secret_key, curve_server_key, insecure)
    selection = _selection(pids, watch, targets_file, mode)
    launch.require_root("the collector")
    if bind and bind.startswith("ipc://"):
        launch.runtime_dir(os.path.dirname(bind[len("ipc://"):]))

    def ready():
        from s3slower.sdnotify import notify
        notify("READY=1")
        click.echo("s3slower collector: ready", err=True)

    record_to = None
    if record_path:
        fd = os.open(record_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        record_to = os.fdopen(fd, "wb")
    reloader = _collector_reloader(ctx, pids, watch, mode)
    launch.run_collector(endpoint, bool(bind), selection, hostname, ready, launch.StopFlag(),
                         ringbuf_pages=ringbuf_pages, curve=curve, record_to=record_to,
                         buffer_messages=buffer_messages,
                         buffer_bytes=buffer_mb * 1024 * 1024 if buffer_mb else None,
                         reload=reloader)


# --------------------------------------------------------------------------
# aggregator

@cli.command()
@click.option("--connect", "connects", multiple=True, help="Collector endpoint(s) to connect to.")
@click.option("--bind", "binds", multiple=True, help="Endpoint(s) collectors connect to.")
@_output_options
@click.option("--targets", "targets_file", type=click.Path(dir_okay=False),
              help="targets.yml whose prom_labels keys become metric labels.")
@click.option("--curve-secret-key", type=click.Path(exists=True, dir_okay=False),
              help="The aggregator's CurveZMQ .key_secret file (server key).")
@click.option("--allowed-keys", type=click.Path(exists=True, file_okay=False),
              help="Directory of allowed collectors' public .key files.")
@click.option("--insecure", is_flag=True, help="Allow plain TCP without CurveZMQ.")
@click.option("--user", default=launch.SERVICE_USER, show_default=True,
              help="Unprivileged user to become when started as root.")
@click.option("--allow-root", is_flag=True, help="Keep running as root.")
@click.option("--replay", "replay_path", type=click.Path(exists=True, dir_okay=False),
              help="Replay a `collector --record` file instead of subscribing.")
@click.option("--exit-on-bye", is_flag=True, hidden=True)
@click.option("--parent-pid", type=int, default=0, hidden=True)
@click.pass_context
def aggregator(ctx, connects, binds, targets_file, curve_secret_key, allowed_keys, insecure,
               user, allow_root, replay_path, exit_on_bye, parent_pid, **o):
    """The unprivileged half: decode, parse, correlate, output."""
    import zmq

    from s3slower.aggregator.outputs import OutputOptions, build_outputs
    from s3slower.aggregator.pipeline import Pipeline
    from s3slower.aggregator.service import Aggregator
    from s3slower.aggregator.subscriber import Subscriber
    from s3slower.common.config import label_keys
    from s3slower.common.losses import Loss
    from s3slower.keys import aggregator_curve

    _logging(o["debug"])
    if ctx.meta["config"].prometheus.buffer_size is not None:
        log.warning("%s: prometheus.buffer_size is deprecated and ignored (metrics are read "
                    "when scraped); remove it", ctx.meta["config_path"])
    if not (connects or binds or replay_path) and ctx.meta["config"].transport.endpoint:
        binds = (ctx.meta["config"].transport.endpoint,)
    if bool(connects) + bool(binds) + bool(replay_path) != 1:
        raise click.UsageError("give one of --connect, --bind or --replay")
    curve = aggregator_curve(list(connects or binds), curve_secret_key, allowed_keys, insecure)
    extra_labels = label_keys(_targets(targets_file))
    if o["container_label"] and "container_id" in extra_labels:
        raise click.UsageError("a target's prom_labels key container_id collides with "
                               "--container-label; rename that key")
    replay_file = open(replay_path, "rb") if replay_path else None   # before dropping root
    launch.drop_privileges(user, allow_root)
    opts = OutputOptions(
        output=o["output"], max_url_length=o["max_url_length"],
        log_dir=None if o["no_log"] else o["log_dir"], log_max_size_mb=o["log_max_size"],
        log_max_backups=o["log_max_backups"], prometheus=o["prometheus"],
        prom_host=o["host"], prom_port=o["port"], extra_label_keys=extra_labels,
        max_buckets=o["max_buckets"], interval_s=o["interval"],
        container_label=o["container_label"])
    pipeline = Pipeline(path_style_hosts=frozenset(o["path_style_endpoints"]))
    if replay_file:
        from s3slower.aggregator.replay import replay
        outputs = build_outputs(opts)
        agg = Aggregator(None, pipeline, outputs.sinks, min_latency_ms=o["min_latency"],
                         loss_sources=outputs.loss_sources)
        with replay_file:
            try:
                replay(replay_file, agg)
            finally:
                outputs.close()
        _aggregator_summary(agg, 0)
        return
    if exit_on_bye:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides
    stop = launch.StopFlag(signals=(signal.SIGTERM,) if exit_on_bye
                           else (signal.SIGINT, signal.SIGTERM))
    sub = Subscriber(zmq.Context.instance(), list(connects or binds), bind=bool(binds),
                     curve=curve)
    outputs = build_outputs(opts, [lambda: {Loss.COLLECTORS_REFUSED: sub.refused()}])
    agg = Aggregator(sub, pipeline, outputs.sinks, min_latency_ms=o["min_latency"],
                     loss_sources=outputs.loss_sources)

    def should_stop() -> bool:
        if stop() or (exit_on_bye and agg.byes > 0):
            return True
        return bool(parent_pid) and os.getppid() != parent_pid

    def ready():
        from s3slower.sdnotify import notify
        notify("READY=1")
        if not exit_on_bye:   # under `run`, the parent says ready for both
            click.echo("s3slower aggregator: ready", err=True)

    try:
        agg.run(should_stop, ready, _aggregator_reloader(ctx, agg))
    finally:
        sub.close()
        outputs.close()
    _aggregator_summary(agg, sub.refused())


def _aggregator_summary(agg, refused: int) -> None:
    from s3slower.aggregator.ledger import stop_summary
    launch.summary("aggregator", {**stop_summary(agg.snapshot), "collectors_refused": refused})


# --------------------------------------------------------------------------
# run / attach: both halves on one host

def _run(ctx: click.Context, selection, pids=(), watch=(), mode="auto") -> None:
    _logging(ctx.params["debug"])
    log_to = None if ctx.params["no_log"] else ctx.params["log_dir"]
    launch.run_both(selection, _child_args(ctx), log_to=log_to,
                    reload=_collector_reloader(ctx, pids, watch, mode))


@cli.command()
@_output_options
@_selection_options
@click.pass_context
def run(ctx, pids, watch, targets_file, mode, **_):
    """Run the tracer on this host (collector + unprivileged aggregator)."""
    _run(ctx, _selection(pids, watch, targets_file, mode), pids, watch, mode)


@cli.command()
@click.option("--pid", type=int, required=True, help="Process ID to attach to.")
@click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True,
              help="Probe mode.")
@_output_options
@click.pass_context
def attach(ctx, pid, mode, **_):
    """Attach to a specific process (and its threads)."""
    if not os.path.exists(f"/proc/{pid}"):
        raise launch.LaunchError(f"no process with pid {pid}")
    _run(ctx, _selection((pid,), (), None, mode), (pid,), (), mode)


def main() -> None:
    cli(prog_name="s3slower")
