"""The standard S3 sequence through the AWS Common Runtime's HTTP client
(awscrt: aws-c-http over aws-c-io, whose TLS on Linux is s2n), keep-alive
while the server allows it, SigV4 by botocore.

Usage: crt_s3_ops.py HOST PORT BUCKET BODY_SIZE CA_FILE
Prints {"pid", "calls": [{"op", "status", "ms"}]}.
"""
import json
import os
import sys
import time
from io import BytesIO
from urllib.parse import quote

from awscrt import http, io
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

host, port, bucket, size, ca = (sys.argv[1], int(sys.argv[2]), sys.argv[3],
                                int(sys.argv[4]), sys.argv[5])
TIMEOUT_S = 30
elg = io.EventLoopGroup(1)
bootstrap = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
tls = io.TlsContextOptions()
tls.override_default_trust_store_from_path(None, ca)
opts = io.ClientTlsContext(tls).new_connection_options()
opts.set_server_name("localhost")
conn = None


def connection():
    """The open connection, or a new one (moto closes after each response)."""
    global conn
    if conn is None or not conn.is_open():
        conn = http.HttpClientConnection.new(host_name=host, port=port, bootstrap=bootstrap,
                                             tls_connection_options=opts).result(TIMEOUT_S)
    return conn


def call(method, path, body=b""):
    req = AWSRequest(method=method, url=f"https://{host}:{port}{path}", data=body)
    S3SigV4Auth(Credentials("testing", "testing"), "s3", "us-east-1").add_auth(req)
    headers = [(k, v) for k, v in req.prepare().headers.items() if k.lower() != "host"]
    headers.append(("Host", f"{host}:{port}"))
    if body or method == "PUT":
        headers.append(("Content-Length", str(len(body))))
    got = {}
    c = connection()
    t = time.perf_counter()
    stream = c.request(http.HttpRequest(method, path, http.HttpHeaders(headers),
                                           BytesIO(body) if body else None),
                          on_response=lambda status_code, **kw: got.update(status=status_code),
                          on_body=lambda chunk, **kw: None)
    stream.activate()
    stream.completion_future.result(TIMEOUT_S)
    return {"status": got["status"], "ms": (time.perf_counter() - t) * 1000}


key = quote("dir/obj 1.bin")
steps = [("CreateBucket", "PUT", f"/{bucket}", b""),
         ("PutObject", "PUT", f"/{bucket}/{key}", b"s" * size),
         ("GetObject", "GET", f"/{bucket}/{key}", b""),
         ("HeadObject", "HEAD", f"/{bucket}/{key}", b""),
         ("ListObjectsV2", "GET", f"/{bucket}?list-type=2", b""),
         ("GetObject", "GET", f"/{bucket}/missing", b""),
         ("DeleteObject", "DELETE", f"/{bucket}/{key}", b""),
         ("DeleteBucket", "DELETE", f"/{bucket}", b"")]
calls = [dict(op=op, **call(m, p, b)) for op, m, p, b in steps]
if conn.is_open():
    conn.close().result(TIMEOUT_S)
print(json.dumps({"pid": os.getpid(), "calls": calls}))
