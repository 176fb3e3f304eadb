"""A real boto3 client, retries on in standard mode, against a server that
fails some requests (bench/s3server.py's faults, named by the keys).

Usage: boto3_retries.py ENDPOINT BUCKET
Prints one JSON object: {"pid", "calls": [{"op", "key", "status", "retries",
"attempts"}]}: per call botocore's ResponseMetadata RetryAttempts (also of a
call that failed in the end), and the attempts its before-send hook counted
(with each attempt's amz-sdk-request header).
"""
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, bucket = sys.argv[1:3]
sent = []


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else v


def client(max_attempts: int):
    c = boto3.client("s3", endpoint_url=endpoint,
                     config=Config(retries={"mode": "standard", "max_attempts": max_attempts},
                                   s3={"addressing_style": "path"}))
    c.meta.events.register("before-send.s3", lambda request, **_: sent.append(
        _text(request.headers["amz-sdk-request"])))
    return c


s3 = client(5)
# a call that fails in the end: fewer retries (backoffs grow to 16 s)
s3_short = client(2)
CALLS = [(s3, "get_object", "slowdown2-get-100", {}),
         (s3, "put_object", "internal1-put", {"Body": b"x" * 100}),
         (s3, "head_object", "slowdown1-head-10", {}),
         (s3, "get_object", "reset1-get-100", {}),
         (s3, "get_object", "plain-get-100", {}),
         (s3_short, "get_object", "slowdown9-exhausted", {})]
calls = []
for c, op, key, kw in CALLS:
    before = len(sent)
    try:
        resp = getattr(c, op)(Bucket=bucket, Key=key, **kw)
        resp.get("Body") and resp["Body"].read()
    except ClientError as exc:
        resp = exc.response
    meta = resp["ResponseMetadata"]
    calls.append({"op": op, "key": key, "status": meta["HTTPStatusCode"],
                  "retries": meta["RetryAttempts"], "attempts": sent[before:]})
print(json.dumps({"pid": os.getpid(), "calls": calls}))
