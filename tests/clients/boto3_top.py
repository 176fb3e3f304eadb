"""A boto3 client for the live top: two buckets, several operations, some errors.

Usage: boto3_top.py ENDPOINT PREFIX
Makes buckets PREFIX-a and PREFIX-b and a known number of requests of each
operation in each (GetObject of missing keys: NoSuchKey), retries off so one
call is one request.  Prints one JSON object: {"pid", "comm", "rows":
[[bucket, operation, requests, errors, request body bytes]]}.
"""
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, prefix = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}))
a, b = prefix + "-a", prefix + "-b"
BODY = b"x" * 1000
rows: dict[tuple[str, str], list[int]] = {}


def call(bucket, op, fn, sent=0):
    row = rows.setdefault((bucket, op), [0, 0, 0])
    row[0] += 1
    row[2] += sent
    try:
        fn()
    except ClientError:
        row[1] += 1


for bucket in (a, b):
    call(bucket, "CreateBucket", lambda: s3.create_bucket(Bucket=bucket))
for i in range(6):
    call(a, "PutObject", lambda: s3.put_object(Bucket=a, Key=f"k{i}", Body=BODY), len(BODY))
for i in range(5):                  # 3 found, 2 NoSuchKey
    key = f"k{i}" if i < 3 else f"missing{i}"
    call(a, "GetObject", lambda: s3.get_object(Bucket=a, Key=key)["Body"].read())
for i in range(3):
    call(b, "PutObject", lambda: s3.put_object(Bucket=b, Key=f"k{i}", Body=BODY), len(BODY))
for i in range(4):
    call(b, "HeadObject", lambda: s3.head_object(Bucket=b, Key=f"k{i % 3}"))
for _ in range(2):
    call(b, "ListObjectsV2", lambda: s3.list_objects_v2(Bucket=b))
print(json.dumps({"pid": os.getpid(), "comm": open("/proc/self/comm").read().strip(),
                  "rows": [[bk, op, *n] for (bk, op), n in rows.items()]}))
