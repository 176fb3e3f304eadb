"""Helpers for fleet tests: a standalone aggregator and collectors as processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import S3_ENV, VENV_BIN, wait_until

S3SLOWER = str(VENV_BIN / "s3slower")
CLIENTS = Path(__file__).parent / "clients"


LIVE: list["Proc"] = []   # every process started; stop_all() ends the stragglers


def stop_all() -> None:
    while LIVE:
        LIVE.pop().stop(signal.SIGKILL)


class Proc:
    def __init__(self, args: list[str], tmp: Path, name: str, env=None):
        self.out_path, self.err_path = tmp / f"{name}.out", tmp / f"{name}.err"
        self._out, self._err = open(self.out_path, "w"), open(self.err_path, "w")
        self.proc = subprocess.Popen(args, stdout=self._out, stderr=self._err,
                                     env=env or os.environ.copy())
        LIVE.append(self)

    def err(self) -> str:
        return self.err_path.read_text()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.out_path.read_text().splitlines()
                if line.startswith("{")]

    def stop(self, sig=signal.SIGTERM) -> int:
        if self in LIVE:
            LIVE.remove(self)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._out.closed:
            self._out.close()
            self._err.close()
        return self.proc.returncode


def aggregator(tmp: Path, name: str, args: list[str]) -> Proc:
    p = Proc([S3SLOWER, "aggregator", "--output", "json", "--no-log", *args], tmp, name)
    wait_until(lambda: "ready" in p.err() or p.proc.poll() is not None, 60,
               f"aggregator {name} to be ready")
    assert p.proc.poll() is None, p.err()
    return p


def collector(tmp: Path, name: str, args: list[str]) -> Proc:
    p = Proc([S3SLOWER, "collector", *args], tmp, name)
    wait_until(lambda: "ready" in p.err() or p.proc.poll() is not None, 90,
               f"collector {name} to be ready")
    assert p.proc.poll() is None, p.err()
    return p


class GatedClient:
    def __init__(self, endpoint: str, bucket: str):
        self.proc = subprocess.Popen([sys.executable, str(CLIENTS / "gated_boto3.py"),
                                      endpoint, bucket], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, **S3_ENV))
        self.pid = json.loads(self.proc.stdout.readline())["pid"]

    def burst(self, n: int) -> dict:
        self.proc.stdin.write(f"go {n}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(20)


def summary(proc: Proc, who: str) -> dict:
    """The machine-readable line a stopped collector/aggregator prints."""
    tag = f"s3slower {who} stopped: "
    line = [l for l in proc.err().splitlines() if l.startswith(tag)][-1]
    return json.loads(line[len(tag):])
