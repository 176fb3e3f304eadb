"""S3 operation, bucket and key of one HTTP request, from the S3 REST model (pure).

The rule table is `s3model.json` next to this module, generated from botocore's
published S3 service model by `packaging/gen_s3model.py`; it is read once, at
import, into an index keyed by (method, has bucket, has key).  botocore is not
a run-time dependency.

Invariants:
  * `classify` never raises on odd input: anything it cannot read gives
    operation "Unknown" (bucket and key "" when the target itself is garbage).
  * An operation is named only when exactly one rule is the most specific
    match: method, path shape, required query keys (with their fixed values,
    e.g. list-type=2) and distinguishing headers (x-amz-copy-source) all hold,
    and no other query "marker" key of the model (acl, tagging, uploads, ...)
    is left unexplained.  Ties go to the non-deprecated operation, then to the
    one whose endpoint kind (S3 Express control or not) fits the host.  A
    remaining tie, or no match, is "Unknown".
  * `x-id=Name` is never required; when present and Name matches, it wins.
  * Keys are percent-decoded (UTF-8, invalid bytes replaced); `+` in a path
    stays a plus.  Query names are matched exactly (S3 is case-sensitive).

Path style versus virtual-hosted style, per endpoint (port ignored):
  path style   empty host, IP literals (v4, [v6]), `localhost`, single-label
               hosts, hosts in `path_style_hosts`, bare service endpoints
               (`s3.amazonaws.com`, `s3.us-west-2.amazonaws.com`,
               `s3.dualstack.…`, `s3-external-1.…`, `s3express-control.…`).
  virtual      a host with an S3 service label (`s3`, `s3-*`, `s3express*`,
               the rightmost one) preceded by other labels: those labels are
               the bucket (`my.bucket.s3.eu-west-1.amazonaws.com` -> my.bucket;
               a PrivateLink `vpce-…` label is skipped).  Also the well-known
               `<bucket>.storage.googleapis.com` and
               `<bucket>.<region>.digitaloceanspaces.com`.
  judgement    any other multi-label host is path style: custom endpoints
               (MinIO, Ceph RGW, moto, appliances) are addressed path style
               unless wildcard DNS and certificates were set up, and clients
               default to path style for custom endpoints.
"""
from __future__ import annotations

import functools
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Optional
from urllib.parse import unquote

MODEL_FILE = Path(__file__).with_name("s3model.json")
UNKNOWN = "Unknown"
X_ID = "x-id"
CONTROL_PREFIX = "s3express-control."
# Decisions per host and per request shape are memoised: a host's style and
# an operation depend on few inputs, and S3 clients repeat them endlessly.
CACHE_SIZE = 4096
MAX_CACHED_QUERY_KEYS = 8
MAX_CACHED_TARGET = 512

_S3_LABEL = re.compile(r"s3(?:-[a-z0-9-]+|express[a-z0-9-]*)?\Z")
# (suffix, labels between bucket and suffix) of providers without an s3 label.
_PROVIDER_SUFFIXES = ((".storage.googleapis.com", 0),
                      (".digitaloceanspaces.com", 1))


@dataclass(frozen=True)
class S3Target:
    operation: str   # AWS API name, e.g. "GetObject"; "Unknown" when unsure
    bucket: str      # "" when none
    key: str         # URL-decoded object key, "" when none


_GARBAGE = S3Target(UNKNOWN, "", "")


@dataclass(frozen=True)
class _Rule:
    name: str
    query: tuple[tuple[str, Optional[str]], ...]   # key, fixed value or None
    headers: tuple[str, ...]
    accepts: frozenset[str]                         # optional marker keys
    deprecated: bool
    control: bool

    @property
    def score(self) -> int:
        return len(self.query) + len(self.headers)

    def matches(self, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        return (all(k in query and (v is None or query[k] == v) for k, v in self.query)
                and all(h in headers for h in self.headers))

    def explains(self, key: str) -> bool:
        return key in self.accepts or any(k == key for k, _ in self.query)


@dataclass(frozen=True)
class _Index:
    rules: Mapping[tuple[str, bool, bool], tuple[_Rule, ...]]
    literals: Mapping[tuple[str, str], str]       # (method, path) -> operation
    markers: frozenset[str]                       # every query key a rule requires
    operations: frozenset[str]


def _rule(name: str, op: Mapping[str, Any]) -> _Rule:
    return _Rule(name=name, query=tuple(sorted(op.get("query", {}).items())),
                 headers=tuple(op.get("headers", ())),
                 accepts=frozenset(op.get("accepts", ())),
                 deprecated=bool(op.get("deprecated")), control=bool(op.get("control")))


def build_index(model: Mapping[str, Any]) -> _Index:
    """Index a generated model document (the content of s3model.json)."""
    rules: dict[tuple[str, bool, bool], list[_Rule]] = {}
    literals: dict[tuple[str, str], str] = {}
    markers: set[str] = set()
    for name, op in model["operations"].items():
        if op.get("literal"):
            literals[(op["method"], op["literal"])] = name
            continue
        rule = _rule(name, op)
        markers.update(k for k, _ in rule.query)
        rules.setdefault((op["method"], bool(op["bucket"]), bool(op["key"])), []).append(rule)
    return _Index({k: tuple(v) for k, v in rules.items()}, literals,
                  frozenset(markers), frozenset(model["operations"]))


INDEX = build_index(json.loads(MODEL_FILE.read_text(encoding="utf-8")))


# --- endpoints -------------------------------------------------------------

def _hostname(host: str) -> str:
    """Lower-case host name without userinfo, port, brackets or trailing dot."""
    h = host.strip().lower().rpartition("@")[2]
    if h.startswith("["):
        return h[1:].partition("]")[0]
    if h.count(":") == 1:
        h = h.partition(":")[0]
    return h.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=64)
def _normalized(hosts: frozenset[str]) -> frozenset[str]:
    return frozenset(_hostname(h.rpartition("://")[2].partition("/")[0])
                     for h in hosts if isinstance(h, str))


def _s3_label_bucket(labels: list[str], name: str) -> Optional[str]:
    """Bucket before the rightmost S3 service label; None without one."""
    for i in range(len(labels) - 2, -1, -1):
        if _S3_LABEL.match(labels[i]):
            before = labels[:i]
            if before and before[-1].startswith("vpce-") and name.endswith(".vpce.amazonaws.com"):
                before = before[:-1]
            return ".".join(before)
    return None


def _provider_bucket(name: str) -> str:
    for suffix, region_labels in _PROVIDER_SUFFIXES:
        if name.endswith(suffix):
            labels = name[:-len(suffix)].split(".")
            return ".".join(labels[:len(labels) - region_labels])
    return ""


def _frozen(hosts) -> frozenset[str]:
    """Any collection of hosts as a frozenset (the caches below need one)."""
    return hosts if isinstance(hosts, frozenset) else frozenset(hosts or ())


@functools.lru_cache(maxsize=CACHE_SIZE)
def _virtual_bucket(name: str, path_style_hosts: frozenset[str]) -> str:
    """The bucket a host name carries ("" when the endpoint is path style)."""
    if ("." not in name or _is_ip(name)
            or name in _normalized(path_style_hosts)):
        return ""
    labels = name.split(".")
    bucket = _s3_label_bucket(labels, name)
    return _provider_bucket(name) if bucket is None else bucket


def is_path_style(host: str, path_style_hosts: frozenset[str] = frozenset()) -> bool:
    """True when requests to `host` name the bucket in the path."""
    if not isinstance(host, str):
        return True
    return _virtual_bucket(_hostname(host), _frozen(path_style_hosts)) == ""


# --- request target --------------------------------------------------------

def _split_target(target: str) -> Optional[tuple[Optional[str], str, str]]:
    """(authority of an absolute-form target or None, path, query); None if garbage."""
    target = target.partition("#")[0]
    authority = None
    if not target.startswith("/"):
        scheme, sep, rest = target.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            return None
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        authority, target = rest[:cut], rest[cut:]
        target = target if target.startswith("/") else "/" + target
    path, _, query = target.partition("?")
    return authority, path, query


def _parse_query(query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            out.setdefault(unquote(name), unquote(value))
    return out


def _bucket_and_key(virtual_bucket: str, path: str) -> tuple[str, str]:
    if virtual_bucket:
        return virtual_bucket, unquote(path[1:])
    bucket, _, key = path[1:].partition("/")
    return unquote(bucket), unquote(key)


# --- choosing --------------------------------------------------------------

def _prefer(rules: list[_Rule], wanted: Callable[[_Rule], bool]) -> list[_Rule]:
    kept = [r for r in rules if wanted(r)]
    return kept or rules


def _choose(candidates: Iterable[_Rule], query: Mapping[str, str],
            headers: Mapping[str, str], control_host: bool) -> str:
    matches = [r for r in candidates if r.matches(query, headers)]
    named = [r for r in matches if r.name == query.get(X_ID)]
    if named:
        return named[0].name
    if not matches:
        return UNKNOWN
    best = max(r.score for r in matches)
    top = [r for r in matches if r.score == best]
    top = _prefer(top, lambda r: not r.deprecated)
    top = _prefer(top, lambda r: r.control == control_host)
    if len(top) != 1:
        return UNKNOWN
    rule = top[0]
    unexplained = [k for k in query if k in INDEX.markers and not rule.explains(k)]
    return UNKNOWN if unexplained else rule.name


def classify(method: str, target: str, headers: Mapping[str, str], *,
             path_style_hosts: frozenset[str] = frozenset()) -> S3Target:
    """The S3 operation, bucket and URL-decoded key of one request."""
    if not isinstance(method, str) or not isinstance(target, str):
        return _GARBAGE
    headers = headers if isinstance(headers, Mapping) else {}
    host = headers.get("host", "")
    # the result depends only on these: a client repeating a request costs a lookup
    args = (method, target, host if isinstance(host, str) else "",
            tuple(h in headers for h in _HEADERS), _frozen(path_style_hosts))
    if len(target) > MAX_CACHED_TARGET:     # long (presigned) targets are not worth a slot
        return _classify(*args)
    return _classified(*args)


def _classify(method: str, target: str, host: str, present: tuple[bool, ...],
              path_style_hosts: frozenset[str]) -> S3Target:
    """classify, from the request's Host and which of _HEADERS it has."""
    parts = _split_target(target)
    if parts is None:
        return _GARBAGE
    authority, path, query_text = parts
    name = _hostname(authority if authority is not None else host)
    method = method.upper()
    literal = INDEX.literals.get((method, path))
    if literal:
        return S3Target(literal, "", "")
    bucket, key = _bucket_and_key(_virtual_bucket(name, path_style_hosts), path)
    query = _parse_query(query_text)
    # the choice depends only on what the rules look at: memoise on exactly that
    signature = (method, bool(bucket), bool(key), frozenset(query),
                 tuple((k, query[k]) for k in _VALUED if k in query),
                 present, name.startswith(CONTROL_PREFIX))
    return S3Target(_operation(signature, query), bucket, key)


_classified = functools.lru_cache(maxsize=CACHE_SIZE)(_classify)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _operation_of(signature: tuple) -> str:
    query = dict.fromkeys(signature[3], "")
    query.update(signature[4])
    return _operation_uncached(signature, query)


def _operation_uncached(signature: tuple, query: Mapping[str, str]) -> str:
    method, has_bucket, has_key, _, _, present, control = signature
    headers = {h: "" for h, there in zip(_HEADERS, present) if there}
    return _choose(INDEX.rules.get((method, has_bucket, has_key), ()), query, headers, control)


def _operation(signature: tuple, query: Mapping[str, str]) -> str:
    if len(signature[3]) > MAX_CACHED_QUERY_KEYS:   # odd requests are not worth a slot
        return _operation_uncached(signature, query)
    return _operation_of(signature)


# What the rules compare: query keys with a fixed value (and x-id), and headers.
_VALUED = tuple(sorted({k for rules in INDEX.rules.values() for r in rules
                        for k, v in r.query if v is not None} | {X_ID}))
_HEADERS = tuple(sorted({h for rules in INDEX.rules.values() for r in rules
                         for h in r.headers}))
