"""The collector's guess of an unreadable TLS stack (collector/tlsstack.py),
on real processes: a Python that loaded obstore (rustls inside its
extension) and one that did not."""
from __future__ import annotations

import subprocess
import sys

import pytest

from s3slower.collector.tlsstack import StackGuesser

READY = "import sys{}; print('ready', flush=True); sys.stdin.read()"


def _guess(imports: str) -> str:
    p = subprocess.Popen([sys.executable, "-c", READY.format(imports)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        g = StackGuesser()
        first = g.guess(p.pid)
        assert g.guess(p.pid) == first            # the second from the file cache
        return first
    finally:
        p.stdin.close()
        p.wait(10)


def test_rustls_in_a_mapped_extension():
    pytest.importorskip("obstore", reason="tests/setup-test-tools.sh installs obstore")
    assert _guess(", obstore.store") == "rustls"


def test_nothing_to_guess():
    assert _guess(", ssl") == "unknown"


def test_a_gone_process_is_unknown():
    assert StackGuesser().guess(2 ** 22 + 1) == "unknown"
