"""Command line (click): run, attach, collector, aggregator, keygen, version.

Configuration the documented click way: `-C/--config` is eager and loads the
file into the command's `default_map`, so every flag given on the command
line wins over the file and the file wins over the built-in defaults; each
command then builds its `Settings` once (common/settings.py) and hands them
to the halves (launch.py).  The options' defaults are the settings' own.
Errors become exit codes here, at the edge: every expected failure is one
sentence on stderr and a non-zero status; `--debug` adds the traceback.
"""
from __future__ import annotations

import enum
import logging
import os
import sys
import traceback
from typing import Optional

import click
from click.core import ParameterSource

from s3slower import __version__
from s3slower import launch
from s3slower.common import settings as _settings
from s3slower.common.config import OUTPUTS, Config
from s3slower.common.otlpconfig import PROTOCOLS
from s3slower.common.targets import TLS_MODES

# Every default once: the options' are these dataclasses' fields (the file's
# keys, the collector's and the aggregator's own settings).
D, DC, DA = Config(), _settings.CollectorSettings(), _settings.AggregatorSettings()


class ExitStatus(enum.IntEnum):
    """What the process exit status means (click itself exits 2 on bad usage)."""
    OK = 0
    ERROR = 1           # an expected failure, said in one sentence
    USAGE = 2
    INTERNAL = 70       # a bug (EX_SOFTWARE): the one line says so



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
    if "settings" in ctx.meta:          # run's aggregator child: built by its parent
        return value
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


# command -> its parameters -> the values of each half's own settings
_HALVES = {
    "collector": lambda p: {"collector": p},
    "aggregator": lambda p: {"aggregator": p},
    "run": lambda p: {"collector": p},
    "attach": lambda p: {"collector": {"pids": (p["pid"],), "mode": p["mode"],
                                       "use_targets": False}},   # its --pid only
}


def settings_of(ctx: click.Context) -> _settings.Settings:
    """The settings of the command `ctx` parsed: defaults < file < the flags given."""
    given = {p.name for p in ctx.command.params
             if ctx.get_parameter_source(p.name) == ParameterSource.COMMANDLINE}
    return _settings.build(ctx.meta["config"], ctx.meta["config_path"], ctx.params, given,
                           **_HALVES[ctx.command.name](ctx.params))


def _logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="s3slower: %(message)s")


# --------------------------------------------------------------------------
# option sets

MODES = list(TLS_MODES)


def _selection_options(f):
    f = click.option("--pid", "pids", type=int, multiple=True,
                     help="Trace only this process (repeatable).")(f)
    f = click.option("--watch", multiple=True, help="Process names to watch (e.g. mc,warp).")(f)
    f = click.option("--targets", "targets_file", type=click.Path(dir_okay=False),
                     help="targets.yml: trace only the processes it matches.")(f)
    f = click.option("--mode", type=click.Choice(MODES), default=DC.mode, show_default=True,
                     help="Probe mode: which TLS libraries to probe (http: none).")(f)
    return f


def _otlp_endpoint(_ctx, _param, value: Optional[str]) -> Optional[str]:
    from s3slower.common.otlpconfig import otlp_endpoint
    from s3slower.common.validate import ConfigError, Where
    try:
        return value if value is None else otlp_endpoint(value, Where("--otlp-endpoint"))
    except ConfigError as exc:
        raise click.BadParameter(exc.problem) from None


# Options the aggregator takes, `run` and `attach` too (for their aggregator child).
def _output_options(f):
    opts = [
        click.option("--output", type=click.Choice(list(OUTPUTS)),
                     default=D.output, show_default=True, help="Terminal output format."),
        click.option("--min-latency", type=click.FloatRange(min=0), default=D.min_latency_ms,
                     show_default=True, help="Minimum latency in ms to report."),
        click.option("--prometheus", is_flag=True, help="Enable Prometheus exporter."),
        click.option("-p", "--port", type=click.IntRange(0, 65535),
                     default=D.prometheus.prom_exporter_port, show_default=True,
                     help="Prometheus exporter port."),
        click.option("--host", default=D.prometheus.prom_exporter_host, show_default=True,
                     help="Prometheus exporter host."),
        click.option("--interval", type=click.FloatRange(min=0.1), default=D.interval,
                     show_default=True, help="Collection interval (s) of the min/max gauges."),
        click.option("--max-buckets", type=click.IntRange(min=1), default=D.max_buckets,
                     show_default=True,
                     help="Bucket label values in metrics, __other__ (the rest) included."),
        click.option("--container-label", is_flag=True,
                     help="Add a container_id label to the request metrics."),
        click.option("--otlp", is_flag=True,
                     help="Export spans and the duration histogram over OTLP."),
        click.option("--otlp-endpoint", callback=_otlp_endpoint,
                     help="OTLP receiver's base URL (default http://localhost:4318, "
                          "gRPC :4317)."),
        click.option("--otlp-protocol", type=click.Choice(list(PROTOCOLS)),
                     default=D.otlp.protocol, show_default=True, help="OTLP transport."),
        click.option("--otlp-object-key", is_flag=True,
                     help="Spans carry the object key (aws.s3.key)."),
        click.option("--client-label", is_flag=True,
                     help="Add a client label (boto3, aws-cli, ...) to the request metrics."),
        click.option("--max-url-length", type=click.IntRange(min=8),
                     default=D.screen.max_url_length, show_default=True,
                     help="KEY column truncation length."),
        click.option("--path-style-endpoint", "path_style_endpoints", multiple=True,
                     help="Host of an S3 endpoint addressed path style (repeatable)."),
        click.option("--log-dir", default=D.log.dir, show_default=True, help="Log directory."),
        click.option("--log-max-size", type=click.IntRange(min=1), default=D.log.max_size_mb,
                     show_default=True, help="Max log size in MB before rotation."),
        click.option("--log-max-backups", type=click.IntRange(min=0),
                     default=D.log.max_backups, show_default=True,
                     help="Rotated log files kept."),
        click.option("--no-log", is_flag=True, help="Disable file logging."),
        click.option("--debug", is_flag=True, help="Enable debug output (and tracebacks)."),
        _config_option,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


# --------------------------------------------------------------------------
# collector

@cli.command()
@click.option("--bind", help="Endpoint to bind (local: ipc:///run/s3slower/collector.sock).")
@click.option("--connect", "connects", multiple=True,
              help="Aggregator endpoint to connect to (tcp://HOST:5556); repeated: "
                   "one of them, chosen by this host's name, the next if it fails.")
@click.option("--hostname", help="Host name the records carry (default: this host's).")
@click.option("--curve-secret-key", type=click.Path(exists=True, dir_okay=False),
              help="This collector's CurveZMQ .key_secret file.")
@click.option("--curve-server-key", type=click.Path(exists=True, dir_okay=False),
              help="The aggregator's public .key file.")
@click.option("--insecure", is_flag=True, help="Allow plain TCP without CurveZMQ.")
@_selection_options
@click.option("--buffer-messages", type=click.IntRange(min=1), default=DC.buffer_messages,
              help="Messages held while the aggregator is away (default 20000).")
@click.option("--buffer-mb", type=click.IntRange(min=1), default=DC.buffer_mb,
              help="Megabytes held while the aggregator is away (default 128).")
@click.option("--record", "record_path", type=click.Path(dir_okay=False),
              help="Also write every published message to this file (mode 0600).")
@click.option("--ringbuf-pages", type=int, default=DC.ringbuf_pages, hidden=True)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@_config_option
@click.pass_context
def collector(ctx, **_):
    """The privileged half: load BPF, attach, publish events."""
    settings = settings_of(ctx)
    _logging(settings.config.debug)
    launch.start_collector(settings)


# --------------------------------------------------------------------------
# aggregator

def _child_settings(ctx: click.Context, _param, value: Optional[str]):
    """Eager: run's aggregator child is handed the settings its parent built."""
    if value is not None:
        try:
            ctx.meta["settings"] = _settings.from_json(value)
        except (ValueError, KeyError, TypeError):
            raise click.BadParameter("not the settings `s3slower run` hands its child") \
                from None
    return value


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
@click.option("--user", default=DA.user, show_default=True,
              help="Unprivileged user to become when started as root.")
@click.option("--allow-root", is_flag=True, help="Keep running as root.")
@click.option("--replay", "replay_path", type=click.Path(exists=True, dir_okay=False),
              help="Replay a `collector --record` file instead of subscribing.")
@click.option("--exit-on-bye", is_flag=True, hidden=True)
@click.option("--parent-pid", type=int, default=DA.parent_pid, hidden=True)
@click.option("--settings", "settings_json", is_eager=True, expose_value=False, hidden=True,
              callback=_child_settings)
@click.pass_context
def aggregator(ctx, **_):
    """The unprivileged half: decode, parse, correlate, output."""
    settings = ctx.meta.get("settings") or settings_of(ctx)
    _logging(settings.config.debug)
    launch.run_aggregator(settings)


# --------------------------------------------------------------------------
# run / attach: both halves on one host

def _run(ctx: click.Context) -> None:
    settings = settings_of(ctx)
    _logging(settings.config.debug)
    if _debug():                        # the aggregator child shows tracebacks too
        os.environ["S3SLOWER_TRACEBACK"] = "1"
    launch.run_both(settings, settings.selection(settings.targets_file))


@cli.command()
@_output_options
@_selection_options
@click.pass_context
def run(ctx, **_):
    """Run the tracer on this host (collector + unprivileged aggregator)."""
    _run(ctx)


@cli.command()
@click.option("--pid", type=int, required=True, help="Process ID to attach to.")
@click.option("--mode", type=click.Choice(MODES), default=DC.mode, show_default=True,
              help="Probe mode.")
@_output_options
@click.pass_context
def attach(ctx, pid, **_):
    """Attach to a specific process (and its threads)."""
    if not os.path.exists(f"/proc/{pid}"):
        raise launch.LaunchError(f"no process with pid {pid}")
    _run(ctx)


def main() -> None:
    cli(prog_name="s3slower")
