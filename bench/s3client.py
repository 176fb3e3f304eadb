"""The overhead bench's client: real boto3, driven over stdin, one JSON line per run.

It names itself `s3bclient` (prctl) as soon as it starts, so a tracer started
later with `--watch s3bclient` selects it and nothing else.  Each command
makes a fresh boto3 client (new connections, opened after the tracer is
ready), does one warm-up request, then repeats one operation for a fixed time:

    {"url": "...", "ca": "...", "op": "get"|"put", "size": 4096, "seconds": 3}
    -> {"requests": N, "seconds": S, "bytes": B}

With "minimal": true, a GET is made with http.client instead (no SDK: the
least a client does per request, so the tracer's share of it is the largest).
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
import time

COMM = b"s3bclient"
BUCKET = "bench"
READ_CHUNK = 1 << 20


def set_comm(name: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, name, 0, 0, 0)   # PR_SET_NAME


def client(url: str, ca: str | None):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=url, verify=ca or False,
                        region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


class Minimal:
    """GETs through http.client on one keep-alive connection."""

    def __init__(self, url: str, ca: str | None):
        import http.client
        import ssl
        host, port = url.split("//")[1].rsplit(":", 1)
        if url.startswith("https"):
            ctx = ssl.create_default_context(cafile=ca)
            self.conn = http.client.HTTPSConnection(host, int(port), context=ctx)
        else:
            self.conn = http.client.HTTPConnection(host, int(port))

    def get(self, path: str) -> int:
        self.conn.request("GET", path)
        return len(self.conn.getresponse().read())

    def close(self) -> None:
        self.conn.close()


def run(cmd: dict) -> dict:
    size = int(cmd["size"])
    key = f"obj-{size}"
    if cmd.get("minimal"):
        s3 = Minimal(cmd["url"], cmd.get("ca"))
        return _loop(cmd, lambda: s3.get(f"/{BUCKET}/{key}"), s3.close)
    s3 = client(cmd["url"], cmd.get("ca"))
    body = bytes(size)

    def once() -> int:
        if cmd["op"] == "put":
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            return size
        stream = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        n = 0
        while True:
            chunk = stream.read(READ_CHUNK)
            if not chunk:
                return n
            n += len(chunk)

    return _loop(cmd, once, s3.close)


def _loop(cmd: dict, once, close) -> dict:
    once()                                      # connect, handshake: not timed
    n = nbytes = 0
    t0 = time.perf_counter()
    deadline = t0 + float(cmd["seconds"])
    limit = int(cmd.get("max_requests", 10**9))
    while n < limit:
        nbytes += once()
        n += 1
        if time.perf_counter() >= deadline:
            break
    dt = time.perf_counter() - t0
    close()
    return {"requests": n, "seconds": dt, "bytes": nbytes}


def main() -> None:
    set_comm(COMM)
    import boto3  # noqa: F401  (import cost paid before the first command)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
