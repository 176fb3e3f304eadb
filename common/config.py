"""The configuration model: s3slower.yaml and targets.yml into frozen dataclasses.

Invariants:
  * Pure: `parse_config`/`parse_targets` turn already-parsed YAML into values
    or raise `ConfigError`; `load_config`/`load_targets` only add reading the
    file.  No sockets, no clocks, no globals beyond constants.
  * Every key of the Go tool's s3slower.yaml and targets.yml is accepted with
    its meaning (drop-in); unknown keys, wrong types and out-of-range values
    are errors, one line naming the file, the key path and what is allowed.
  * No file at all is the defaults.  A key left empty means its default.
  * Flags win over files: `default_map` (common/configkeys.py) feeds click's
    `default_map`, which only fills parameters the command line did not give.
  * Relative paths in a loaded file are relative to that file's directory.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Mapping, Optional, Union

from s3slower.common.configkeys import (changed_keys, default_map,  # noqa: F401 (re-exported)
                                        paths_relative_to)
from s3slower.common.otlpconfig import OtlpConfig, parse_otlp
from s3slower.common.targets import MATCH_TYPES, TLS_MODES, WATCH_PREFIX, Target
from s3slower.common.validate import (ConfigError, Where, boolean, choice, integer, items,
                                      number, parse_yaml, section, string)

__all__ = ["ConfigError", "Config", "PrometheusConfig", "ScreenConfig", "LogConfig",
           "TransportConfig", "OtlpConfig", "load_config", "load_targets", "parse_config", "parse_targets",
           "label_keys", "default_map", "changed_keys", "DEFAULT_CONFIG_PATH",
           "DEFAULT_TARGETS_PATH", "OUTPUTS", "BUILTIN_LABELS"]

DEFAULT_CONFIG_PATH = "/etc/s3slower/s3slower.yaml"
DEFAULT_TARGETS_PATH = "/etc/s3slower/targets.yml"
OUTPUTS = ("table", "simple", "json", "top", "none")
# Label names every per-request metric already carries (SPEC §6) ...
BUILTIN_LABELS = ("hostname", "comm", "s3_operation", "bucket", "endpoint")
# ... and names Prometheus reserves for histograms and summaries.
RESERVED_LABELS = ("le", "quantile")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# host, host:port, [v6] or [v6]:port, as clients put it in their Host header
ENDPOINT_HOST = re.compile(r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?"
                           r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")
TRANSPORT_SCHEMES = ("tcp://", "ipc://")
# Target ids the tracer makes up itself for --pid, --watch and trace-all.
RESERVED_TARGET_IDS = ("all",)
RESERVED_TARGET_PREFIXES = (WATCH_PREFIX, "pid:")

# Range limits: the low ends are what works at all; the high ends are far
# above any sane use and stop a typo (an extra zero or three) early.
MAX_INTERVAL_S = 3600.0          # min/max gauges over more than an hour say nothing
MIN_URL_LENGTH = 8               # room for a few characters and the ellipsis
MAX_URL_LENGTH = 4096
MAX_PROM_BUFFER = 1_000_000
MAX_LOG_SIZE_MB = 1024 * 1024    # 1 TiB per file
MAX_LOG_BACKUPS = 1000
MAX_BUCKETS = 1_000_000          # each bucket value costs ~40 series per label set
MAX_MULTIPART_IDLE_S = 7 * 86400.0   # S3 keeps an unfinished upload until a lifecycle rule


@dataclass(frozen=True)
class PrometheusConfig:
    enabled: bool = False                   # like --prometheus
    prom_exporter_host: str = "::"          # --host
    prom_exporter_port: int = 9000          # --port
    # Deprecated: accepted (the Go tool's files have it) and ignored, with a
    # warning -- the metrics are read from the ledger when scraped, no buffer.
    buffer_size: Optional[int] = None


@dataclass(frozen=True)
class ScreenConfig:
    table_format: bool = True               # False: one line per request (output simple)
    max_url_length: int = 50                # object key truncated to this many characters


@dataclass(frozen=True)
class LogConfig:
    dir: str = "/var/log/s3slower"          # --log-dir
    max_size_mb: int = 100                  # --log-max-size: rotate above this size
    max_backups: int = 5                    # rotated files kept
    enabled: bool = True                    # False: like --no-log


@dataclass(frozen=True)
class TransportConfig:
    """The collector -> aggregator link (SPEC §7); all optional."""
    endpoint: Optional[str] = None          # aggregator binds it, collectors connect to it
    curve_secret_key: Optional[str] = None  # this program's own .key_secret file
    curve_server_key: Optional[str] = None  # collector: the aggregator's public .key
    allowed_keys_dir: Optional[str] = None  # aggregator: allowed collectors' .key files
    # collector: several aggregators, one chosen by rendezvous hashing of the
    # host name (docs/scaling.md); when given, instead of `endpoint`
    endpoints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    interval: float = 5.0                   # collection interval (s) of min/max gauges
    min_latency_ms: float = 0.0             # requests faster than this are not reported
    debug: bool = False
    prometheus: PrometheusConfig = PrometheusConfig()
    screen: ScreenConfig = ScreenConfig()
    log: LogConfig = LogConfig()
    output: str = "table"                   # table | simple | json | top | none
    targets_file: Optional[str] = None      # targets.yml; None: trace every process
    path_style_endpoints: tuple[str, ...] = ()   # lower-case hosts addressed path style
    transport: TransportConfig = TransportConfig()
    max_buckets: int = 1000                 # bucket label values, __other__ included
    container_label: bool = False           # container_id metric label (docs/containers.md)
    otlp: OtlpConfig = OtlpConfig()         # OpenTelemetry export (common/otlpconfig.py)
    multipart_idle_s: float = 300.0         # an upload with no request this long: abandoned
    client_label: bool = False              # client metric label (aggregator/useragent.py)


def _known(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


# --------------------------------------------------------------------------
# s3slower.yaml

def parse_config(data: object, source: str) -> Config:
    """A Config from parsed YAML (None: all defaults); ConfigError otherwise."""
    where = Where(source)
    top = section(data, where, _known(Config))
    d = Config()
    screen = _screen(top.get("screen"), where.at("screen"))
    output = _output(top, where)
    return Config(
        interval=_opt(top, "interval", d.interval, where,
                      lambda v, w: number(v, w, 0, MAX_INTERVAL_S, above=True)),
        min_latency_ms=_opt(top, "min_latency_ms", d.min_latency_ms, where,
                            lambda v, w: number(v, w, 0)),
        debug=_opt(top, "debug", d.debug, where, boolean),
        prometheus=_prometheus(top.get("prometheus"), where.at("prometheus")),
        screen=replace(screen, table_format=output == "table"),
        log=_log(top.get("log"), where.at("log")),
        output=output,
        targets_file=_opt(top, "targets_file", None, where, _path),
        path_style_endpoints=_endpoints(top.get("path_style_endpoints"),
                                        where.at("path_style_endpoints")),
        transport=_transport(top.get("transport"), where.at("transport")),
        max_buckets=_opt(top, "max_buckets", d.max_buckets, where,
                         lambda v, w: integer(v, w, 1, MAX_BUCKETS)),
        container_label=_opt(top, "container_label", d.container_label, where, boolean),
        otlp=parse_otlp(top.get("otlp"), where.at("otlp")),
        multipart_idle_s=_opt(top, "multipart_idle_s", d.multipart_idle_s, where,
                              lambda v, w: number(v, w, 0, MAX_MULTIPART_IDLE_S, above=True)),
        client_label=_opt(top, "client_label", d.client_label, where, boolean))


def _opt(m: Mapping[str, Any], key: str, default: Any, where: Where, check) -> Any:
    """m[key] checked by `check(value, where)`; the default when absent or null."""
    value = m.get(key)
    return default if value is None else check(value, where.at(key))


def _prometheus(value: object, where: Where) -> PrometheusConfig:
    m, d = section(value, where, _known(PrometheusConfig)), PrometheusConfig()
    return PrometheusConfig(
        enabled=_opt(m, "enabled", d.enabled, where, boolean),
        prom_exporter_host=_opt(m, "prom_exporter_host", d.prom_exporter_host, where,
                                lambda v, w: string(v, w, "a host name or address")),
        prom_exporter_port=_opt(m, "prom_exporter_port", d.prom_exporter_port, where,
                                lambda v, w: integer(v, w, 1, 65535)),
        buffer_size=_opt(m, "buffer_size", d.buffer_size, where,
                         lambda v, w: integer(v, w, 1, MAX_PROM_BUFFER)))


def _screen(value: object, where: Where) -> ScreenConfig:
    m, d = section(value, where, _known(ScreenConfig)), ScreenConfig()
    return ScreenConfig(
        table_format=_opt(m, "table_format", d.table_format, where, boolean),
        max_url_length=_opt(m, "max_url_length", d.max_url_length, where,
                            lambda v, w: integer(v, w, MIN_URL_LENGTH, MAX_URL_LENGTH)))


def _output(top: Mapping[str, Any], where: Where) -> str:
    """`output`, or the Go tool's `screen.table_format`; the two must agree.
    (Called after `screen` was checked to be a mapping.)"""
    output = _opt(top, "output", None, where, lambda v, w: choice(v, w, OUTPUTS))
    screen = top.get("screen") or {}
    table = _opt(screen, "table_format", None, where.at("screen"), boolean)
    if output is None:
        return "simple" if table is False else "table"
    if table is not None and table != (output == "table"):
        raise where.at("screen").at("table_format").error(
            f"is {str(table).lower()} but output is {output}; drop one of them")
    return output


def _log(value: object, where: Where) -> LogConfig:
    m, d = section(value, where, _known(LogConfig)), LogConfig()
    return LogConfig(
        dir=_opt(m, "dir", d.dir, where, lambda v, w: string(v, w, "a directory path")),
        max_size_mb=_opt(m, "max_size_mb", d.max_size_mb, where,
                         lambda v, w: integer(v, w, 1, MAX_LOG_SIZE_MB)),
        max_backups=_opt(m, "max_backups", d.max_backups, where,
                         lambda v, w: integer(v, w, 0, MAX_LOG_BACKUPS)),
        enabled=_opt(m, "enabled", d.enabled, where, boolean))


def _endpoints(value: object, where: Where) -> tuple[str, ...]:
    what = "host names (host or host:port)"
    hosts: list[str] = []
    for i, host in enumerate(items(value, where, what)):
        if not isinstance(host, str) or not ENDPOINT_HOST.match(host):
            raise where.at(i).bad("a host name or host:port without scheme or path", host)
        if host.lower() not in hosts:
            hosts.append(host.lower())
    return tuple(hosts)


def _transport(value: object, where: Where) -> TransportConfig:
    m = section(value, where, _known(TransportConfig))
    return TransportConfig(
        endpoint=_opt(m, "endpoint", None, where, _zmq_endpoint),
        curve_secret_key=_opt(m, "curve_secret_key", None, where, _path),
        curve_server_key=_opt(m, "curve_server_key", None, where, _path),
        allowed_keys_dir=_opt(m, "allowed_keys_dir", None, where, _path),
        endpoints=_zmq_endpoints(m.get("endpoints"), where.at("endpoints")))


def _zmq_endpoints(value: object, where: Where) -> tuple[str, ...]:
    found: list[str] = []
    for i, ep in enumerate(items(value, where, "ZeroMQ endpoints")):
        if _zmq_endpoint(ep, where.at(i)) in found:
            raise where.at(i).error(f"{ep} is listed twice")
        found.append(ep)
    return tuple(found)


def _zmq_endpoint(value: object, where: Where) -> str:
    if not isinstance(value, str) or not value.startswith(TRANSPORT_SCHEMES) \
            or len(value) <= len("tcp://"):
        raise where.bad("a ZeroMQ endpoint tcp://HOST:PORT or ipc://PATH", value)
    return value


def _path(value: object, where: Where) -> str:
    return string(value, where, "a file path")


# --------------------------------------------------------------------------
# targets.yml

def parse_targets(data: object, source: str) -> tuple[Target, ...]:
    """The targets of parsed targets.yml (None: none); ConfigError otherwise."""
    where = Where(source)
    top = section(data, where, ("targets",))
    entries = items(top.get("targets"), where.at("targets"), "targets")
    targets = tuple(_target(e, where.at("targets").at(i)) for i, e in enumerate(entries))
    _check_unique_ids(targets, where.at("targets"))
    return targets


def _target(value: object, where: Where) -> Target:
    m = section(value, where, ("id", "match", "mode", "prom_labels"))
    if "id" not in m or "match" not in m:
        missing = "id" if "id" not in m else "match"
        raise where.at(missing).error("is required")
    match = section(m["match"], where.at("match"), ("type", "value"))
    if "type" not in match or "value" not in match:
        missing = "type" if "type" not in match else "value"
        raise where.at("match").at(missing).error("is required")
    match_type = choice(match["type"], where.at("match").at("type"), MATCH_TYPES)
    return Target(id=_target_id(m["id"], where.at("id")), match_type=match_type,
                  value=_match_value(match["value"], match_type, where.at("match").at("value")),
                  mode=_opt(m, "mode", "auto", where, lambda v, w: choice(v, w, TLS_MODES)),
                  prom_labels=_prom_labels(m.get("prom_labels"), where.at("prom_labels")))


def _target_id(value: object, where: Where) -> str:
    ident = string(value, where, "a non-empty name")
    if ident in RESERVED_TARGET_IDS or ident.startswith(RESERVED_TARGET_PREFIXES):
        names = RESERVED_TARGET_IDS + tuple(p + "…" for p in RESERVED_TARGET_PREFIXES)
        raise where.error(f"{ident!r} is reserved ({', '.join(names)}); choose another name")
    return ident


def _match_value(value: object, match_type: str, where: Where) -> str:
    text = string(value, where)
    if match_type == "exe_basename" and "/" in text:
        raise where.bad("an executable's file name without '/'", text)
    return text


def _prom_labels(value: object, where: Where) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.bad("a mapping of label names to string values", value)
    labels: dict[str, str] = {}
    for key, val in value.items():
        labels[_label_name(key, where)] = _label_value(val, where.at(str(key)))
    return labels


def _label_name(key: object, where: Where) -> str:
    at = where.at(str(key))
    if not isinstance(key, str) or not LABEL_NAME.match(key) or key.startswith("__"):
        raise at.error("is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, "
                       "not starting with __)")
    if key in BUILTIN_LABELS + RESERVED_LABELS:
        raise at.error(f"collides with a built-in label ({', '.join(BUILTIN_LABELS)}, "
                       f"{', '.join(RESERVED_LABELS)}); choose another name")
    return key


def _label_value(value: object, where: Where) -> str:
    if isinstance(value, str):
        return value
    raise where.bad("a string (quote numbers and booleans, e.g. \"1.10\")", value)


def _check_unique_ids(targets: Iterable[Target], where: Where) -> None:
    seen: set[str] = set()
    for i, t in enumerate(targets):
        if t.id in seen:
            raise where.at(i).at("id").error(f"{t.id!r} is used by an earlier target; "
                                             "ids must be unique")
        seen.add(t.id)


def label_keys(targets: Iterable[Target]) -> tuple[str, ...]:
    """Sorted union of all targets' prom_labels keys: the extra metric labels."""
    return tuple(sorted({key for t in targets for key in t.prom_labels}))


# --------------------------------------------------------------------------
# files

PathArg = Union[str, "os.PathLike[str]", None]


def _read(path: PathArg, default_path: str) -> tuple[Optional[str], str]:
    """(text or None when a missing default file, source name)."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            return f.read(), source
    except FileNotFoundError:
        if os.path.abspath(source) == os.path.abspath(default_path):
            return None, source
        raise ConfigError(source, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(source, "", f"cannot read: {reason}") from None


def load_config(path: PathArg, default_path: str = DEFAULT_CONFIG_PATH) -> Config:
    """Config from the file at `path`. None, or a missing `default_path`: defaults."""
    if path is None:
        return Config()
    text, source = _read(path, default_path)
    if text is None:
        return Config()
    config = parse_config(parse_yaml(text, source), source)
    return paths_relative_to(config, os.path.dirname(os.path.abspath(source)))


def load_targets(path: PathArg, default_path: str = DEFAULT_TARGETS_PATH) -> tuple[Target, ...]:
    """Targets from the file at `path`. None, or a missing `default_path`: none."""
    if path is None:
        return ()
    text, source = _read(path, default_path)
    if text is None:
        return ()
    return parse_targets(parse_yaml(text, source), source)
