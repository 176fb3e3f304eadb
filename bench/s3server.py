"""A minimal, fast S3-ish HTTP/1.1 server for the overhead bench (plain or TLS).

moto takes milliseconds per request, which would hide the tracer's cost; this
answers in tens of microseconds.  It speaks just enough S3 for boto3:

  GET/HEAD /bucket/key   200 with a body of N bytes, N taken from the key's
                         last "-N" (e.g. obj-4096), default 1024
  PUT/POST/DELETE ...    the body is read (Content-Length, chunked, or
                         aws-chunked framed by Content-Length) and dropped;
                         200 with an ETag, no body -- but POST ?uploads and
                         POST ?uploadId= answer as S3 does, with the upload id
                         UPLOAD-<key> (tests/test_e2e_multipart.py: boto3's
                         multipart uploads on connections kept alive)

Given `Faults` (tests/test_e2e_retries.py, in-process: `start`), a key whose
name starts "slowdown<N>", "internal<N>" or "reset<N>" has the first N
requests of each method to it answered 503 SlowDown, 500 InternalError (S3's
XML error bodies; a HEAD's without one), or closed unanswered once their
request was read; `Faults.served` counts what was done.

One thread per connection, blocking sockets, keep-alive.  Loopback only.

    python -m bench.s3server --port 0 [--cert C --key K]   # prints "port N"
"""
from __future__ import annotations

import argparse
import collections
import re
import socket
import ssl
import sys
import threading
from typing import Callable

_SIZE = re.compile(rb"-(\d+)(?:\?|$)")
DEFAULT_SIZE = 1024
MAX_HEAD = 64 * 1024
_BODIES: dict[int, bytes] = {}
_FAULT = re.compile(rb"/(slowdown|internal|reset)([0-9])[^/?]*(?:\?|$)")
_ERRORS = {"slowdown": (b"503 Slow Down", b"SlowDown", b"Please reduce your request rate."),
           "internal": (b"500 Internal Server Error", b"InternalError",
                        b"We encountered an internal error. Please try again.")}


class Faults:
    """Which requests fail, and how many of each kind did (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen: collections.Counter[bytes] = collections.Counter()
        self.served: collections.Counter[str] = collections.Counter()

    def take(self, method: bytes, target: bytes) -> str:
        """The fault this request gets ("slowdown", "internal", "reset"), or ""."""
        m = _FAULT.search(target)
        if m is None:
            return ""
        with self.lock:
            path = method + b" " + target.split(b"?")[0]
            self.seen[path] += 1
            if self.seen[path] > int(m.group(2)):
                return ""
            kind = m.group(1).decode()
            self.served[kind] += 1
            return kind


def error_answer(kind: str, method: bytes) -> bytes:
    status, code, message = _ERRORS[kind]
    xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>' + code + b"</Code><Message>"
           + message + b"</Message><RequestId>bench</RequestId></Error>")
    head = (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/xml\r\n"
            b"x-amz-request-id: bench\r\nContent-Length: %d\r\n\r\n" % len(xml))
    return head if method == b"HEAD" else head + xml


def body_of(size: int) -> bytes:
    b = _BODIES.get(size)
    if b is None:
        b = _BODIES[size] = bytes(size)
    return b


class Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def fill(self) -> bool:
        data = self.sock.recv(262144)
        if not data:
            return False
        self.buf += data
        return True

    def head(self):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[:i])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > MAX_HEAD or not self.fill():
                return None

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return ln
            if not self.fill():
                raise ConnectionError("closed inside a chunk line")

    def skip(self, n: int) -> None:
        while n > 0:
            if not self.buf and not self.fill():
                raise ConnectionError("closed inside a body")
            k = min(n, len(self.buf))
            del self.buf[:k]
            n -= k


def handle(sock: socket.socket, faults: Faults | None = None) -> None:
    c = Conn(sock)
    with sock:
        while True:
            head = c.head()
            if head is None:
                return
            lines = head.split(b"\r\n")
            method, target, _ = lines[0].split(b" ", 2)
            hdrs = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(b":")
                hdrs[k.strip().lower()] = v.strip()
            if hdrs.get(b"expect", b"").lower() == b"100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            if b"chunked" in hdrs.get(b"transfer-encoding", b"").lower():
                while True:
                    size = int(c.line().split(b";")[0], 16)
                    if size == 0:
                        while c.line():
                            pass
                        break
                    c.skip(size + 2)
            else:
                c.skip(int(hdrs.get(b"content-length", b"0")))
            fault = faults.take(method, target) if faults is not None else ""
            if fault == "reset":
                return
            if fault:
                sock.sendall(error_answer(fault, method))
                continue
            common = b"x-amz-request-id: bench\r\nServer: s3bench\r\n"
            if method in (b"GET", b"HEAD"):
                m = _SIZE.search(target)
                size = int(m.group(1)) if m else DEFAULT_SIZE
                resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                        b"ETag: \"bench\"\r\n" + common
                        + b"Content-Length: %d\r\n\r\n" % size)
                if method == b"GET" and size <= 65536:
                    sock.sendall(resp + body_of(size))
                else:
                    sock.sendall(resp)
                    if method == b"GET":
                        sock.sendall(body_of(size))
            elif method == b"POST" and b"?upload" in target:
                answer = multipart_answer(target)
                sock.sendall(b"HTTP/1.1 200 OK\r\n" + common
                             + b"Content-Length: %d\r\n\r\n" % len(answer))
                sock.sendall(answer)            # a read of its own, as S3's often is
            else:
                sock.sendall(b"HTTP/1.1 200 OK\r\nETag: \"bench\"\r\n" + common
                             + b"Content-Length: 0\r\n\r\n")


def multipart_answer(target: bytes) -> bytes:
    """CreateMultipartUpload's or CompleteMultipartUpload's XML answer."""
    key = target.split(b"?")[0].rsplit(b"/", 1)[-1]
    xml = b'<?xml version="1.0" encoding="UTF-8"?>'
    if b"uploadId=" not in target:
        return (xml + b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>" + key
                + b"</Key><UploadId>UPLOAD-" + key + b"</UploadId></InitiateMultipartUploadResult>")
    return (xml + b'<CompleteMultipartUploadResult><ETag>"bench"</ETag>'
            b"</CompleteMultipartUploadResult>")


def serve(port: int, cert: str | None, key: str | None) -> None:
    ls = socket.create_server(("127.0.0.1", port), backlog=1024)
    ctx = None
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
    print(f"port {ls.getsockname()[1]}", flush=True)
    accept(ls, ctx)


def accept(ls: socket.socket, ctx: ssl.SSLContext | None = None,
           faults: Faults | None = None) -> None:
    """Serve each connection of `ls` in a thread of its own, until ls is shut down."""
    def run(s):
        try:
            if ctx is not None:
                s = ctx.wrap_socket(s, server_side=True)
            handle(s, faults)
        except (OSError, ValueError, ConnectionError, ssl.SSLError):
            s.close()

    while True:
        try:
            s, _ = ls.accept()
        except OSError:                 # shut down (start's stop)
            return
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=run, args=(s,), daemon=True).start()


def start(faults: Faults) -> tuple[int, Callable[[], None]]:
    """A plain-HTTP server with faults in a thread of this process: (its port, stop)."""
    ls = socket.create_server(("127.0.0.1", 0), backlog=128)
    thread = threading.Thread(target=accept, args=(ls, None, faults), daemon=True)
    thread.start()

    def stop() -> None:
        ls.shutdown(socket.SHUT_RDWR)
        thread.join(10)
        ls.close()
    return ls.getsockname()[1], stop


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args(argv)
    try:
        serve(a.port, a.cert, a.key)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
