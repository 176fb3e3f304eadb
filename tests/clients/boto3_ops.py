"""A real boto3 client: the foundation's operations, each timed around the call.

Usage: boto3_ops.py ENDPOINT BUCKET [CA_BUNDLE]
Prints one JSON object: {"pid", "boto3", "calls": [{"op", "key", "ms", "status", "size",
"request_id", "host_id"}]}: boto3's version, and per call the RequestId and HostId
of its ResponseMetadata ("" when it has none).  S3S_BODY_SIZE: the object's size
(default 200000).
"""
import json
import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, bucket = sys.argv[1], sys.argv[2]
verify = sys.argv[3] if len(sys.argv) > 3 else None
s3 = boto3.client("s3", endpoint_url=endpoint, verify=verify,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}))
calls = []
BODY = os.urandom(int(os.environ.get("S3S_BODY_SIZE", 200_000)))


def timed(op, key, fn, size=None):
    t = time.perf_counter()
    try:
        out = fn()
    except ClientError as e:
        out = e.response
    ms = (time.perf_counter() - t) * 1000
    meta = out["ResponseMetadata"]
    calls.append({"op": op, "key": key, "ms": ms, "status": meta["HTTPStatusCode"], "size": size,
                  "request_id": meta.get("RequestId", ""), "host_id": meta.get("HostId", "")})
    return out


timed("CreateBucket", "", lambda: s3.create_bucket(Bucket=bucket))
timed("PutObject", "dir/obj 1.bin", lambda: s3.put_object(Bucket=bucket, Key="dir/obj 1.bin", Body=BODY))


def get():
    r = s3.get_object(Bucket=bucket, Key="dir/obj 1.bin")
    assert r["Body"].read() == BODY
    return r


timed("GetObject", "dir/obj 1.bin", get, size=len(BODY))
timed("HeadObject", "dir/obj 1.bin", lambda: s3.head_object(Bucket=bucket, Key="dir/obj 1.bin"), size=0)
timed("ListObjectsV2", "", lambda: s3.list_objects_v2(Bucket=bucket))
timed("GetObject", "missing", lambda: s3.get_object(Bucket=bucket, Key="missing"))
timed("DeleteObject", "dir/obj 1.bin", lambda: s3.delete_object(Bucket=bucket, Key="dir/obj 1.bin"))
timed("DeleteBucket", "", lambda: s3.delete_bucket(Bucket=bucket))
print(json.dumps({"pid": os.getpid(), "boto3": boto3.__version__, "body_size": len(BODY),
                  "calls": calls}))
