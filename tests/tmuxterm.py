"""A real terminal for end-to-end tests: a tmux session (on a server of its
own when `server` is given, `tmux -L server`), its screen and its keys, and
a teardown that waits for every process the session started to end."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from typing import Optional

import pytest

from conftest import wait_until


class Terminal:
    def __init__(self, server: Optional[str] = None):
        self.server = server
        self.name = "s3s-" + uuid.uuid4().hex[:6]
        self.panes: list[int] = []

    def tmux(self, *args: str) -> str:
        server = ["-L", self.server] if self.server else []
        return subprocess.run(["tmux", *server, *args], check=True, capture_output=True,
                              text=True, timeout=30).stdout

    def start(self, cmd: str, width: int = 80, height: int = 40) -> None:
        self.tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                  cmd)
        self.panes.append(int(self.show("#{pane_pid}")))

    def show(self, fmt: str) -> str:
        """A tmux format of the pane: #{pane_pid}, #{alternate_on}, #{cursor_flag} ..."""
        return self.tmux("display-message", "-p", "-t", self.name, fmt).strip()

    def screen(self, escapes: bool = False) -> list[str]:
        args = ["capture-pane", "-p", "-t", self.name] + (["-e"] if escapes else [])
        return self.tmux(*args).splitlines()

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def kill(self) -> None:
        self.tmux("kill-session", "-t", self.name)

    def close(self) -> None:
        procs = set().union(*(tree(p) for p in self.panes))
        server = ["-L", self.server] if self.server else []
        subprocess.run(["tmux", *server, "kill-session", "-t", self.name], capture_output=True)
        # a tracer that outlived its terminal would go on tracing every later test
        try:
            wait_until(lambda: not alive(procs), 120, "the terminal's processes to end")
        finally:
            for p in alive(procs):
                os.kill(p, 9)


def terminal(server: Optional[str] = None):
    """For a fixture: `yield from terminal()`."""
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    term = Terminal(server)
    try:
        yield term
    finally:
        term.close()


def alive(pids: set[int]) -> set[int]:
    out = set()
    for p in pids:
        try:
            if "\nState:\tZ" not in open(f"/proc/{p}/status").read():
                out.add(p)
        except OSError:
            pass
    return out


def tree(pid: int) -> set[int]:
    """pid and its descendants, now."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return tree
