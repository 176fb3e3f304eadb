"""Bench-only work-around, active only while `s3slower.common.config` is missing
from the tree (cli.py imports it; see docs/performance.md, "Problems found").
It provides the two names cli.py needs so the benches can run the real CLI."""
import importlib.util
import sys
import types

try:
    _missing = importlib.util.find_spec("s3slower.common.config") is None
except Exception:  # the package itself is not importable: nothing to patch
    _missing = False
if _missing:
    _m = types.ModuleType("s3slower.common.config")

    class ConfigError(ValueError):
        pass

    def load_targets(path):
        raise ConfigError(f"{path}: targets files need s3slower.common.config")

    _m.ConfigError = ConfigError
    _m.load_targets = load_targets
    sys.modules["s3slower.common.config"] = _m
