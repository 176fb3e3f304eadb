"""Bench-only work-around for a tree in the middle of being built.

cli.py and aggregator/correlate.py import modules that other work is still
adding (s3slower.common.config, s3slower.aggregator.redact, .s3ops).  While —
and only while — one is missing, this provides a minimal stand-in so the
benches can run the real CLI, and exports S3SLOWER_BENCH_SHIMMED naming it;
the benches print that name under their table.  Once the real module exists
this file does nothing.
"""
import importlib.util
import os
import sys
import types


def _missing(name):
    try:
        return importlib.util.find_spec(name) is None
    except Exception:  # the parent itself is not importable: nothing to patch
        return False


_shimmed = []
if _missing("s3slower.common.config"):
    _m = types.ModuleType("s3slower.common.config")

    class ConfigError(ValueError):
        pass

    def load_targets(path):
        raise ConfigError(f"{path}: targets files need s3slower.common.config")

    _m.ConfigError = ConfigError
    _m.load_targets = load_targets
    sys.modules[_m.__name__] = _m
    _shimmed.append(_m.__name__)

if _missing("s3slower.aggregator.redact"):
    _r = types.ModuleType("s3slower.aggregator.redact")

    def redact_target(target):
        path, sep, query = target.partition("?")
        if not sep:
            return target
        return path + "?" + "&".join(p.split("=", 1)[0] + "=REDACTED" for p in query.split("&"))

    _r.redact_target = redact_target
    sys.modules[_r.__name__] = _r
    _shimmed.append(_r.__name__)

if _missing("s3slower.aggregator.s3ops"):
    _s = types.ModuleType("s3slower.aggregator.s3ops")

    class _S3:
        __slots__ = ("operation", "bucket", "key")

        def __init__(self, operation, bucket, key):
            self.operation, self.bucket, self.key = operation, bucket, key

    def classify(method, target, headers, path_style_hosts=frozenset()):
        path = target.split("?", 1)[0].lstrip("/")
        bucket, _, key = path.partition("/")
        op = {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject",
              "DELETE": "DeleteObject"}.get(method, "Unknown") if key else "Unknown"
        return _S3(op, bucket, key)

    _s.classify = classify
    sys.modules[_s.__name__] = _s
    _shimmed.append(_s.__name__)

if _shimmed:
    os.environ["S3SLOWER_BENCH_SHIMMED"] = ",".join(_shimmed)
