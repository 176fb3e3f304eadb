"""A real boto3 client's multipart uploads, as a user writes them.

Usage: boto3_multipart.py ENDPOINT BUCKET MODE FILE [CA_BUNDLE]
MODE: upload (upload_file: s3transfer's parallel parts), twice (upload_file
to big/one.bin, then big/two.bin), abort (two parts, then
AbortMultipartUpload), idle (one part, then nothing: left to go idle).
Prints one JSON object: {"pid", "upload_ids": [...], "parts": N, "bytes": N}
(upload ids as botocore parsed them from CreateMultipartUpload's answer).
"""
import json
import os
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

MIB = 1 << 20
endpoint, bucket, mode, path = sys.argv[1:5]
verify = sys.argv[5] if len(sys.argv) > 5 else None
s3 = boto3.client("s3", endpoint_url=endpoint, verify=verify,
                  config=Config(s3={"addressing_style": "path"}))
upload_ids = []
s3.meta.events.register("after-call.s3.CreateMultipartUpload",
                        lambda parsed, **_: upload_ids.append(parsed["UploadId"]))
s3.create_bucket(Bucket=bucket)
size = os.path.getsize(path)
if mode in ("upload", "twice"):
    for key in ("big/object.bin",) if mode == "upload" else ("big/one.bin", "big/two.bin"):
        s3.upload_file(path, bucket, key,
                       Config=TransferConfig(multipart_threshold=5 * MIB,
                                             multipart_chunksize=5 * MIB, max_concurrency=4))
    parts = -(-size // (5 * MIB))
else:
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="left/object.bin")
    parts = 2 if mode == "abort" else 1
    with open(path, "rb") as f:
        for n in range(1, parts + 1):
            s3.upload_part(Bucket=bucket, Key="left/object.bin", UploadId=mpu["UploadId"],
                           PartNumber=n, Body=f.read(5 * MIB))
    size = min(size, parts * 5 * MIB)
    if mode == "abort":
        s3.abort_multipart_upload(Bucket=bucket, Key="left/object.bin", UploadId=mpu["UploadId"])
print(json.dumps({"pid": os.getpid(), "upload_ids": upload_ids, "parts": parts, "bytes": size}))
