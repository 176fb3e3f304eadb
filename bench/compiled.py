"""What compiling the aggregator's hot path would buy: evidence for a decision, no target.

The modules below are compiled with mypyc (the compiler black builds its
wheels with; it compiles this same annotated source, nothing is rewritten)
from a copy of this tree under the bench's work directory, and put first on
the PYTHONPATH of `s3slower run` and `s3slower aggregator --replay`.  Then
`tracercpu` and `aggregator` run against that build and against the source
as it ships (pure Python), alternating (compiled, pure, pure, compiled), so
the machine's drift falls on both alike.  mypy gets a venv of its own there.

Not part of `make bench`: it builds C, and nothing it measures ships.

    python -m bench compiled
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Optional

from bench import aggregator, tracercpu
from bench.harness import ROOT, WORK, BenchError, Figure, log

MYPY = "mypy==2.4.1"
# The per-record path, those modules whose compiled form passes every
# unit test (records.py and its sinks' modules do not yet: mypyc objects
# take no attributes beyond their class's, and `str` arguments no None)
MODULES = ("aggregator/heads.py", "aggregator/http1.py", "aggregator/framing.py",
           "aggregator/correlate.py", "aggregator/pipeline.py", "aggregator/redact.py",
           "aggregator/retries.py", "common/events.py")


def build() -> str:
    """The directory to put first on PYTHONPATH: the tree, MODULES compiled."""
    venv = WORK / "mypyc-venv"
    if not (venv / "bin" / "mypyc").exists():
        log(f"compiled: installing {MYPY} into {venv}")
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", MYPY], check=True)
    top = WORK / "compiled"
    shutil.rmtree(top, ignore_errors=True)
    tree = top / "s3slower"
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True,
                           capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        (tree / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, tree / f)
    r = subprocess.run([str(venv / "bin" / "mypyc"), *(f"s3slower/{m}" for m in MODULES)],
                       cwd=top, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"mypyc failed: {(r.stdout + r.stderr).strip().splitlines()[-1]}")
    probe = subprocess.run([sys.executable, "-c",
                            "import s3slower.aggregator.heads as m; print(m.__file__)"],
                           env=dict(os.environ, PYTHONPATH=str(top)),
                           capture_output=True, text=True, check=True).stdout.strip()
    if not probe.endswith(".so"):
        raise BenchError(f"the compiled build did not load: heads came from {probe}")
    log(f"compiled: {len(MODULES)} modules built in {top}")
    return str(top)


def _measure(quick: bool) -> list[Figure]:
    return [f for f in tracercpu.run(quick) + aggregator.run(quick) if f.value is not None]


def _set_pythonpath(value: Optional[str]) -> None:
    if value is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = value


def run(quick: bool = False) -> list[Figure]:
    path = build()
    shipped = os.environ.get("PYTHONPATH")
    compiled = path if shipped is None else path + os.pathsep + shipped
    units: dict[str, str] = {}
    values: dict[str, dict[str, list[float]]] = {"as shipped": {}, "compiled": {}}
    try:
        for label in ("compiled", "as shipped", "as shipped", "compiled"):
            log(f"compiled: --- {label}")
            _set_pythonpath(compiled if label == "compiled" else shipped)
            for f in _measure(quick):
                units[f.name] = f.unit
                values[label].setdefault(f.name, []).append(f.value)
    finally:
        _set_pythonpath(shipped)
    # each figure, as shipped and compiled: the mean of its two runs
    return [Figure(f"{label}: {name}", sum(vs) / len(vs), units[name],
                   note="runs " + ", ".join(f"{v:.4g}" for v in vs))
            for name in values["as shipped"] for label in values
            if (vs := values[label].get(name))]
