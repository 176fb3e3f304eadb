"""The collector imports no aggregator module, no prometheus_client, no HTTP parser.

Run in a fresh interpreter so nothing imported by other tests leaks in.
"""
import pkgutil
import subprocess
import sys

import s3slower.collector

SCRIPT = r"""
import importlib, pkgutil, sys
import s3slower.collector as c
for m in pkgutil.iter_modules(c.__path__):
    importlib.import_module("s3slower.collector." + m.name)
import s3slower.cli  # the CLI module must not drag the aggregator in either
bad = sorted(n for n in sys.modules
             if n.startswith(("s3slower.aggregator", "prometheus_client", "http.client",
                              "h11", "httptools", "email.parser", "http.server")))
print("\n".join(bad))
print("MODULES", len([n for n in sys.modules if n.startswith("s3slower.collector")]))
"""


def test_collector_imports_nothing_from_the_aggregator():
    names = [m.name for m in pkgutil.iter_modules(s3slower.collector.__path__)]
    assert {"probes", "publisher", "service", "processes", "hostprep"} <= set(names)
    out = subprocess.run([sys.executable, "-c", SCRIPT], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert out[-1] == f"MODULES {len(names) + 1}"  # the package itself too
    assert out[:-1] == [] or out[:-1] == [""], f"collector imported: {out[:-1]}"
