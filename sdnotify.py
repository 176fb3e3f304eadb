"""systemd readiness: send a state string to $NOTIFY_SOCKET, if any."""
from __future__ import annotations

import os
import socket


def notify(state: str, environ=os.environ) -> bool:
    addr = environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(addr)
        s.sendall(state.encode())
    return True
