"""A small job through pyarrow's S3FileSystem (aws-sdk-cpp over the OpenSSL
compiled into pyarrow's libraries), its first request DELAY_S seconds after
`import pyarrow.fs` started (or as soon as the import returns, if later):
the libraries were mapped moments before, cold for a tracer that has not
seen them.

Usage: pyarrow_s3_job.py HOST:PORT BUCKET CA_FILE DELAY_S
Prints {"pid", "import_ms", "first_request_ms"} (both from the start of the
import).
"""
import json
import os
import sys
import time

t0 = time.monotonic()
import pyarrow.fs as pafs                                       # noqa: E402

t_imported = time.monotonic()
endpoint, bucket, ca, delay_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
s3 = pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                       scheme="https", endpoint_override=endpoint, tls_ca_file_path=ca,
                       allow_bucket_creation=True, allow_bucket_deletion=True,
                       background_writes=False)
time.sleep(max(0.0, t0 + delay_s - time.monotonic()))
t_first = time.monotonic()
s3.create_dir(bucket)
for i, size in enumerate((0, 1000, 300_000)):
    with s3.open_output_stream(f"{bucket}/cold/part-{i}.bin") as f:
        f.write(os.urandom(size))
with s3.open_input_file(f"{bucket}/cold/part-2.bin") as f:
    assert len(f.read()) == 300_000
listed = s3.get_file_info(pafs.FileSelector(f"{bucket}/cold"))
assert len(listed) == 3, listed
missing = s3.get_file_info(f"{bucket}/cold/missing.bin")
assert missing.type == pafs.FileType.NotFound, missing
s3.delete_file(f"{bucket}/cold/part-0.bin")
s3.delete_dir(bucket)
print(json.dumps({"pid": os.getpid(), "import_ms": (t_imported - t0) * 1000,
                  "first_request_ms": (t_first - t0) * 1000}))
