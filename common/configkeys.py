"""Config keys by dotted path: which flag sets which key; reading, setting, diffing keys.

Pure (paths are joined, never looked up), and generic over the frozen
dataclasses of common/config.py (it needs no import of them, so config.py
re-exports these names).  FLAG_KEYS is the one table between the command line
and the file, used both ways: the file into click's `default_map` (a flag the
command line gave wins, click fills only the others), and the flags given onto
the file's values (`with_flags`).
"""
from __future__ import annotations

import os
from dataclasses import fields, is_dataclass, replace
from typing import Any, Iterable, Mapping

# command-line parameter -> the key it sets; a command ignores names it has no
# parameter for (prom_buffer_size has none: the file's key, kept in the map).
FLAG_KEYS = {
    "interval": "interval", "min_latency": "min_latency_ms", "debug": "debug",
    "output": "output", "max_url_length": "screen.max_url_length",
    "prometheus": "prometheus.enabled", "host": "prometheus.prom_exporter_host",
    "port": "prometheus.prom_exporter_port", "prom_buffer_size": "prometheus.buffer_size",
    "log_dir": "log.dir", "log_max_size": "log.max_size_mb",
    "log_max_backups": "log.max_backups", "no_log": "log.enabled",
    "max_buckets": "max_buckets", "container_label": "container_label",
    "client_label": "client_label",
    "path_style_endpoints": "path_style_endpoints",
    "targets_file": "targets_file", "curve_secret_key": "transport.curve_secret_key",
    "curve_server_key": "transport.curve_server_key",
    "allowed_keys": "transport.allowed_keys_dir",
    "otlp": "otlp.enabled", "otlp_endpoint": "otlp.endpoint", "otlp_protocol": "otlp.protocol",
    "otlp_object_key": "otlp.object_key",
}
NEGATED_FLAGS = frozenset({"no_log"})      # the flag is the key's opposite
# Keys that name files or directories: relative to the file that says so (a
# flag's, to where the command started: run's aggregator child, which works
# in /, is handed them absolute).
PATH_KEYS = ("targets_file", "log.dir", "transport.curve_secret_key",
             "transport.curve_server_key", "transport.allowed_keys_dir")
FLAG_OF_KEY = {key: param for param, key in FLAG_KEYS.items()}


def key_value(config: Any, key: str) -> Any:
    """The value at a dotted key path (`prometheus.prom_exporter_port`)."""
    for part in key.split("."):
        config = getattr(config, part)
    return config


def with_key(config: Any, key: str, value: Any) -> Any:
    """A copy of `config` with the value at a dotted key path replaced."""
    head, _, rest = key.partition(".")
    inner = with_key(getattr(config, head), rest, value) if rest else value
    return replace(config, **{head: inner})


def paths_relative_to(config: Any, base: str, keys: Iterable[str] = PATH_KEYS) -> Any:
    """`config` with the relative paths at these keys joined to `base`."""
    for key in keys:
        value = key_value(config, key)
        if value is not None:
            config = with_key(config, key, os.path.join(base, value))  # keeps absolute ones
    return config


def default_map(config: Any) -> dict[str, Any]:
    """click `default_map` for every command: parameter name -> value.  click
    consults it only for parameters not given as flags.  Unset paths are
    left out so click's own default (None) applies."""
    m = {p: key_value(config, key) for p, key in FLAG_KEYS.items()}
    m.update({p: not m[p] for p in NEGATED_FLAGS})
    return {p: v for p, v in m.items() if v is not None or FLAG_KEYS[p] not in PATH_KEYS}


def with_flags(config: Any, flags: Mapping[str, Any]) -> Any:
    """`config` with the keys the given flags (parameter -> value) set; the
    parameters that set no key are ignored.  `output` keeps the Go tool's
    `screen.table_format` in step, as the file does."""
    for param, value in flags.items():
        if param in FLAG_KEYS:
            value = tuple(value) if isinstance(value, list) else value
            config = with_key(config, FLAG_KEYS[param],
                              not value if param in NEGATED_FLAGS else value)
    if "output" in flags:
        config = with_key(config, "screen.table_format", config.output == "table")
    return config


def flag_keys(params: Iterable[str]) -> frozenset[str]:
    """The keys these parameters set."""
    return frozenset(FLAG_KEYS[p] for p in params if p in FLAG_KEYS)


def changed_keys(old: Any, new: Any) -> tuple[str, ...]:
    """Dotted key paths whose values differ (for reload: what to apply or refuse)."""
    return tuple(_diff(old, new, ""))


def _diff(old: Any, new: Any, prefix: str) -> Iterable[str]:
    for f in fields(old):
        a, b, name = getattr(old, f.name), getattr(new, f.name), prefix + f.name
        if is_dataclass(a):
            yield from _diff(a, b, name + ".")
        elif a != b:
            yield name
