"""The standard S3 sequence through NSS: one `tstclnt` (NSS's own test client,
libnss3 + libnspr4) per request, fed a SigV4-signed HTTP/1.1 request.

Usage: nss_ops.py HOST PORT BUCKET BODY_SIZE
tstclnt does not exit when the server closes (it keeps polling its stdin), so
each response is read here until complete (head + Content-Length) and the
process is then ended.  Prints {"calls": [{"op", "pid", "status", "ms"}]}.
"""
import json
import subprocess
import sys
import time
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

host, port, bucket, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
base = f"https://{host}:{port}"
key = quote("dir/obj 1.bin")
RESPONSE_TIMEOUT_S = 30


def raw_request(method: str, path: str, body: bytes = b"") -> bytes:
    req = AWSRequest(method=method, url=base + path, data=body)
    S3SigV4Auth(Credentials("testing", "testing"), "s3", "us-east-1").add_auth(req)
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
    for k, v in req.prepare().headers.items():
        if k.lower() not in ("host", "content-length"):
            head += f"{k}: {v}\r\n"
    if body or method == "PUT":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def exchange(method: str, path: str, body: bytes = b"") -> tuple[int, int, float]:
    t = time.perf_counter()
    p = subprocess.Popen(["tstclnt", "-h", host, "-p", str(port), "-D", "-o",
                          "-V", "tls1.2:tls1.2"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    p.stdin.write(raw_request(method, path, body))
    p.stdin.flush()
    buf = b""
    deadline = time.monotonic() + RESPONSE_TIMEOUT_S
    while time.monotonic() < deadline:
        chunk = p.stdout.read1(65536)
        if not chunk:
            break
        buf += chunk
        if b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if method == "HEAD" or len(rest) >= length:
                break
    ms = (time.perf_counter() - t) * 1000
    p.kill()
    p.wait(10)
    status = int(buf.split(b" ", 2)[1]) if buf.startswith(b"HTTP/1.1 ") else -1
    return p.pid, status, ms


steps = [("CreateBucket", "PUT", f"/{bucket}", b""),
         ("PutObject", "PUT", f"/{bucket}/{key}", b"n" * size),
         ("GetObject", "GET", f"/{bucket}/{key}", b""),
         ("HeadObject", "HEAD", f"/{bucket}/{key}", b""),
         ("ListObjectsV2", "GET", f"/{bucket}?list-type=2", b""),
         ("GetObject", "GET", f"/{bucket}/missing", b""),
         ("DeleteObject", "DELETE", f"/{bucket}/{key}", b""),
         ("DeleteBucket", "DELETE", f"/{bucket}", b"")]
calls = []
for op, method, path, body in steps:
    pid, status, ms = exchange(method, path, body)
    calls.append({"op": op, "pid": pid, "status": status, "ms": ms})
print(json.dumps({"calls": calls}))
