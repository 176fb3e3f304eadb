"""Checked reading of parsed YAML for the config model (pure, no I/O).

Invariants:
  * Every problem is a `ConfigError` whose text is ONE line:
    `FILE: KEY.PATH: what is allowed, got VALUE` (or `FILE:LINE:COL: ...` for
    YAML syntax), so the CLI can print it as is.
  * A key left empty in YAML (null) means "not given": its default applies.
  * Booleans are real booleans (YAML true/false); numbers are never booleans.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import yaml

# Longest piece of an offending value quoted in a message: the line stays short.
MAX_QUOTED_CHARS = 40


class ConfigError(Exception):
    """A bad configuration: `str(e)` is one line naming the file, key and rule."""

    def __init__(self, source: str, key: str, problem: str,
                 line: Optional[int] = None, column: Optional[int] = None):
        self.source, self.key, self.problem = source, key, problem
        self.line, self.column = line, column
        where = source if line is None else f"{source}:{line}:{column or 1}"
        text = f"{where}: {key}: {problem}" if key else f"{where}: {problem}"
        super().__init__(" ".join(text.split()))


def describe(value: object) -> str:
    """A short, single-line rendering of an offending value."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    text = repr(value)
    return text if len(text) <= MAX_QUOTED_CHARS else text[:MAX_QUOTED_CHARS - 3] + "..."


@dataclass(frozen=True)
class Where:
    """A position in a config document: the file and the dotted key path."""
    source: str
    path: str = ""

    def at(self, key: Union[str, int]) -> "Where":
        if isinstance(key, int):
            return Where(self.source, f"{self.path}[{key}]")
        return Where(self.source, f"{self.path}.{key}" if self.path else key)

    def error(self, problem: str) -> ConfigError:
        return ConfigError(self.source, self.path or "top level", problem)

    def bad(self, allowed: str, value: object) -> ConfigError:
        return self.error(f"must be {allowed}, got {describe(value)}")


def section(value: object, where: Where, known: Sequence[str]) -> Mapping[str, Any]:
    """A mapping whose keys are all in `known`; null is an empty mapping."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.bad(f"a mapping with keys {', '.join(known)}", value)
    for key in value:
        if not isinstance(key, str) or key not in known:
            raise where.at(str(key)).error(_unknown(str(key), known))
    return value


def _unknown(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown key{hint}; known keys: {', '.join(known)}"


def boolean(value: object, where: Where) -> bool:
    if not isinstance(value, bool):
        raise where.bad("true or false", value)
    return value


def integer(value: object, where: Where, lo: int, hi: Optional[int] = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        allowed = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"
        raise where.bad(allowed, value)
    return value


def number(value: object, where: Where, lo: float, hi: Optional[float] = None, *,
           above: bool = False) -> float:
    """A finite int or float >= lo (> lo when `above`) and <= hi."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if above else value >= lo) and (hi is None or value <= hi)
    if not ok:
        low = f"greater than {lo:g}" if above else f"at least {lo:g}"
        top = f" and at most {hi:g}" if hi is not None else ""
        raise where.bad(f"a number {low}{top}", value)
    return float(value)


def string(value: object, where: Where, what: str = "a non-empty string") -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.bad(what, value)
    return value


def choice(value: object, where: Where, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise where.bad(f"one of {', '.join(choices)}", value)
    return value


def items(value: object, where: Where, what: str) -> list:
    """A YAML list (null is empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.bad(f"a list of {what}", value)
    return value


# --------------------------------------------------------------------------
# YAML text -> data, with duplicate keys refused and errors located

class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""


def _checked_mapping(loader: _Loader, node: yaml.MappingNode) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)):
            continue    # unhashable keys are refused by construct_mapping
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {describe(key)} appears twice in one mapping",
                key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _checked_mapping)


def parse_yaml(text: str, source: str) -> object:
    """The document in `text`; None when empty. Syntax errors name the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(source, "", f"invalid YAML: {problem}",
                          mark.line + 1 if mark else None,
                          mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, "", f"invalid YAML: {exc}") from None
