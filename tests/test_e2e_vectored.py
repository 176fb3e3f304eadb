"""Requests written and read with vectored calls: writev, sendmsg, readv,
recvmsg, and more buffers than the kernel program looks into (it copies the
first MAX_IOVECS and counts the rest).

A client that speaks HTTP/1.1 by hand to moto, its request heads split
across buffers, bodies in buffers of their own, and
each response read into several buffers; `s3slower run` tracing everything.
Every request must come out with its operation, key, status and sizes.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

CLIENT = r"""
import json, os, socket, sys
host, port, bucket = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print(json.dumps({"pid": os.getpid()}), flush=True)
sys.stdin.readline()

def head(method, path, length=None):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "User-Agent: vectored",
             "Authorization: AWS4-HMAC-SHA256 Credential=testing/20261203/us-east-1/s3/"
             "aws4_request, SignedHeaders=host, Signature=0"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()

def split(b, n):
    step = -(-len(b) // n) or 1
    return [b[i:i + step] for i in range(0, len(b), step)]

buffered = b""
def fill(read_into):
    global buffered
    bufs = [bytearray(700), bytearray(300), bytearray(8192)]
    n = read_into(bufs)
    assert n > 0, "the server closed"
    buffered += b"".join(bufs)[:n]

def response(read_into, has_body=True):
    global buffered
    while b"\r\n\r\n" not in buffered:
        fill(read_into)
    h, _, buffered = buffered.partition(b"\r\n\r\n")
    status = int(h.split(b" ")[1])
    length = 0
    for line in h.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    if not has_body:
        length = 0
    while len(buffered) < length:
        fill(read_into)
    body, buffered = buffered[:length], buffered[length:]
    return status, len(body)

s = None
def connect():
    global s, buffered
    if s:
        s.close()
    s, buffered = socket.create_connection((host, port)), b""

readv = lambda bufs: os.readv(s.fileno(), bufs)
recvmsg = lambda bufs: s.recvmsg_into(bufs)[0]
sendmsg = lambda parts: s.sendmsg(parts)
writev = lambda parts: os.writev(s.fileno(), parts)
made = []
def do(op, key, method, path, body, send, read_into):
    connect()       # moto (Werkzeug) closes each connection after one answer
    send(split(head(method, path, len(body) if method == "PUT" else None), 3)
         + split(body, 3))
    status, got = response(read_into, method != "HEAD")
    made.append((op, key, status, len(body), got))

do("CreateBucket", "", "PUT", f"/{bucket}", b"", sendmsg, recvmsg)
body = os.urandom(5000)
do("PutObject", "w", "PUT", f"/{bucket}/w", body, writev, readv)
do("PutObject", "m", "PUT", f"/{bucket}/m", body, sendmsg, recvmsg)
do("GetObject", "w", "GET", f"/{bucket}/w", b"", writev, readv)
do("GetObject", "m", "GET", f"/{bucket}/m", b"", sendmsg, recvmsg)
do("HeadObject", "m", "HEAD", f"/{bucket}/m", b"", writev, readv)
# more buffers than the kernel looks into: a head in one, the body in nine
connect()
parts = [head("PUT", f"/{bucket}/many", 9000)] + split(os.urandom(9000), 9)
assert len(parts) == 10 and s.sendmsg(parts) == len(b"".join(parts))
status, got = response(recvmsg)
made.append(("PutObject", "many", status, 9000, got))
print(json.dumps({"made": made}), flush=True)
"""


def test_vectored_calls_give_whole_requests(tracer, moto_http):
    host, port = moto_http.url.rsplit("/", 1)[-1].split(":")
    client = subprocess.Popen([sys.executable, "-c", CLIENT, host, port, "vectored"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = json.loads(client.stdout.readline())["pid"]
        client.stdin.write("go\n")
        client.stdin.flush()
        made = json.loads(client.stdout.readline())["made"]
        assert client.wait(30) == 0
    finally:
        if client.poll() is None:
            client.kill()
    assert [m[2] for m in made] == [200] * len(made)
    records = tracer.wait_records([pid], len(made))
    got = [(r["operation"], r["key"], r["status_code"], r["request_size"], r["response_size"])
           for r in records]
    assert got == [tuple(m) for m in made]
    assert all(r["complete"] and r["method"] for r in records)
