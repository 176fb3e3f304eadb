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

One thread per connection, blocking sockets, keep-alive.  Loopback only.

    python -m bench.s3server --port 0 [--cert C --key K]   # prints "port N"
"""
from __future__ import annotations

import argparse
import re
import socket
import ssl
import sys
import threading

_SIZE = re.compile(rb"-(\d+)(?:\?|$)")
DEFAULT_SIZE = 1024
MAX_HEAD = 64 * 1024
_BODIES: dict[int, bytes] = {}


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


def handle(sock: socket.socket) -> None:
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

    def run(s):
        try:
            if ctx is not None:
                s = ctx.wrap_socket(s, server_side=True)
            handle(s)
        except (OSError, ValueError, ConnectionError, ssl.SSLError):
            s.close()

    while True:
        s, _ = ls.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=run, args=(s,), daemon=True).start()


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
