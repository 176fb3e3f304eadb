"""A command's settings, built once: defaults < file < flags.

`Settings` is what a command hands to each half (launch.py builds the
collector and the aggregator from it): `config`, every file key with the
flags the command line gave applied; `file`, the file as read (what a reload
compares a re-read with); `pinned`, the keys a flag set (a reload leaves
them); the file's path; and what only flags say, per half.  Every default is
a dataclass field's, here or in common/config.py; the command-line options
take theirs from these (cli.py), so each default is written once.

`to_json`/`from_json` are how `s3slower run` hands its aggregator child the
settings it built, instead of writing its options back into the child's argv.
"""
from __future__ import annotations

import json
import os
import typing
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from typing import Any, Iterable, Mapping, Optional

from s3slower.common.config import Config, load_targets
from s3slower.common.configkeys import flag_keys, paths_relative_to, with_flags
from s3slower.common.targets import Selection

SERVICE_USER = "s3slower"       # the aggregator drops root to become this user


@dataclass(frozen=True)
class CollectorSettings:
    """What only flags tell the collector."""
    bind: Optional[str] = None              # endpoint to bind ...
    connects: tuple[str, ...] = ()          # ... or connect to (default transport.endpoints,
                                            # or .endpoint); several: collector/links.py
    hostname: Optional[str] = None          # the records' host name (None: this host's)
    insecure: bool = False                  # plain TCP without CurveZMQ
    pids: tuple[int, ...] = ()
    watch: tuple[str, ...] = ()             # as given: "mc,warp" and "mc" "warp" alike
    mode: str = "auto"                      # which TLS libraries to probe
    use_targets: bool = True                # False (attach): its --pid only, no targets
    buffer_messages: Optional[int] = None   # None: the publisher's own bound
    buffer_mb: Optional[int] = None
    record_path: Optional[str] = None       # also write every message here
    ringbuf_pages: int = 0                  # 0: the probes' default


@dataclass(frozen=True)
class AggregatorSettings:
    """What only flags tell the aggregator."""
    connects: tuple[str, ...] = ()          # collector endpoints to connect to ...
    binds: tuple[str, ...] = ()             # ... or to bind (default transport.endpoint)
    insecure: bool = False
    user: str = SERVICE_USER                # who to become when started as root
    allow_root: bool = False
    replay_path: Optional[str] = None       # a `collector --record` file instead
    exit_on_bye: bool = False               # run's child: leave after the collector's BYE
    parent_pid: int = 0                     # run's child: leave when this parent is gone


@dataclass(frozen=True)
class Settings:
    config: Config = Config()               # defaults < file < flags
    file: Config = Config()                 # defaults < file
    pinned: frozenset[str] = frozenset()    # keys a flag set
    config_path: Optional[str] = None       # the file read (None: there was none)
    collector: CollectorSettings = CollectorSettings()
    aggregator: AggregatorSettings = AggregatorSettings()

    def absolute(self, cwd: str) -> "Settings":
        """The same with relative paths (flags') taken from `cwd`: for a
        process that works elsewhere (run's aggregator child works in /)."""
        return replace(self, config=paths_relative_to(self.config, cwd),
                       config_path=self.config_path and os.path.join(cwd, self.config_path))

    @property
    def targets_file(self) -> Optional[str]:
        """The targets.yml that selects processes (attach: none)."""
        return self.config.targets_file if self.collector.use_targets else None

    def selection(self, targets_file: Optional[str]) -> Selection:
        """The processes to trace, with the targets of `targets_file`."""
        c = self.collector
        return Selection.build(pids=c.pids, watch=split_names(c.watch),
                               targets=load_targets(targets_file) if targets_file else (),
                               mode=c.mode)


def build(file: Config, config_path: Optional[str], params: Mapping[str, Any],
          given: Iterable[str], *, collector: Optional[Mapping[str, Any]] = None,
          aggregator: Optional[Mapping[str, Any]] = None) -> Settings:
    """defaults < file < flags.  `file`: the file's Config (its defaults where
    it says nothing) read from `config_path`; `params`: a command's
    parameters (name -> value) and `given`, the names the command line gave;
    `collector`/`aggregator`: the values of that half's own settings (names
    it has no field for are ignored; None: the field's default)."""
    given = set(given)
    return Settings(config=with_flags(file, {p: params[p] for p in given if p in params}),
                    file=file, pinned=flag_keys(given), config_path=config_path,
                    collector=_half(CollectorSettings, collector or {}),
                    aggregator=_half(AggregatorSettings, aggregator or {}))


def _half(cls: type, values: Mapping[str, Any]):
    names = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v
                  for k, v in values.items() if k in names and v is not None})


def split_names(values: Iterable[str]) -> tuple[str, ...]:
    """--watch mc,warp --watch rclone: each name once given, in order."""
    return tuple(x.strip() for v in values for x in v.split(",") if x.strip())


# --------------------------------------------------------------------------
# to the aggregator child of `run` and back

def to_json(settings: Settings) -> str:
    return json.dumps(asdict(settings), default=sorted, sort_keys=True)


def from_json(text: str) -> Settings:
    """The inverse of to_json (ValueError, KeyError or TypeError on anything else)."""
    return _from_dict(Settings, json.loads(text))


def _from_dict(cls: type, data: Mapping[str, Any]):
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        kind, value = hints[f.name], data[f.name]
        if is_dataclass(kind):
            value = _from_dict(kind, value)
        elif isinstance(value, list):
            value = (frozenset if typing.get_origin(kind) is frozenset else tuple)(value)
        values[f.name] = value
    return cls(**values)
