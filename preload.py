"""What the aggregator imports before it drops root (launch.drop_privileges).

All of it, imported while it can still read the checkout: a clone in /root
(mode 0700) is unreadable to the service user, so a lazy import after the
drop would fail.
"""
from __future__ import annotations

import importlib
import pkgutil
import warnings

AGGREGATOR_PACKAGES = ("s3slower.aggregator", "s3slower.common")
AGGREGATOR_MODULES = ("s3slower.reload", "s3slower.sdnotify", "s3slower.keys",
                      "zmq.auth.thread")
# ... but these, which import an optional extra: only when configured (OTLP's
# packages; run_aggregator imports them, and a missing one is said there).
OPTIONAL_MODULES = ("s3slower.aggregator.otlp",)


def preload_aggregator() -> None:
    """Import every module the aggregator may need later (AGGREGATOR_PACKAGES)."""
    for name in AGGREGATOR_MODULES:
        importlib.import_module(name)
    for package in AGGREGATOR_PACKAGES:
        path = importlib.import_module(package).__path__
        for info in pkgutil.iter_modules(path, package + "."):
            if info.name not in OPTIONAL_MODULES:
                importlib.import_module(info.name)


def import_tree(package: str) -> None:
    """Import `package` and every module below it that imports: for libraries
    that import their parts lazily, on first use (requests, grpc), which
    after the drop may be unreadable."""
    pkg = importlib.import_module(package)
    with warnings.catch_warnings():     # parts that warn of their own missing extras
        warnings.simplefilter("ignore")
        for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), package + ".",
                                          onerror=lambda _name: None):
            try:
                importlib.import_module(info.name)
            except Exception:   # an optional part (its own extra missing): not ours to use
                pass
