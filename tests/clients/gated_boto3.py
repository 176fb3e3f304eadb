"""A boto3 client that waits for a line on stdin before each burst of requests.

Lets a test start the tracer for this pid first.  Usage:
  gated_boto3.py ENDPOINT BUCKET   then send "go N\n" to make N PutObject+GetObject
pairs (one burst), "quit\n" to exit.  Prints one JSON line per burst.
"""
import json
import os
import sys
import time

import boto3
from botocore.config import Config

endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}))
print(json.dumps({"pid": os.getpid()}), flush=True)
made = False
for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
        break
    t = time.perf_counter()
    requests = 0
    if not made:
        s3.create_bucket(Bucket=bucket)
        made = True
        requests = 1
    n = int(cmd[1])
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x" * 1000)
        s3.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read()
    print(json.dumps({"requests": requests + 2 * n, "ms": (time.perf_counter() - t) * 1000}),
          flush=True)
