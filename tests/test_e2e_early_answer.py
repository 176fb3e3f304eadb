"""A final answer instead of `100 Continue`, read the way boto3 reads it.

boto3 sends a PUT's head with `Expect: 100-continue` and reads the answer's
status line and headers in small reads before it sends any body.  The kernel
holds such tiny reads until the head ends (one record, not one a byte); a
head longer than it holds goes out as it was, and the call that overflowed
is sent after it.  `rclone serve s3` over HTTPS refuses botocore's streamed
(aws-chunked) PUT with `411 MissingContentLength` before the body: a head of
that kind.  The request must come out with the status and error code boto3
itself got, complete -- it came out with status 0, incomplete, while the
overflowing call's bytes were overwritten by the held ones.
"""
from __future__ import annotations

import json
import sys

import pytest

from conftest import run_client
from test_e2e_go_server import rclone_serve  # noqa: F401  (a fixture)
from tls_fixtures import bucket_name, marker_arrives

pytestmark = pytest.mark.e2e

CLIENT = r"""
import boto3, json, os, sys
from botocore.config import Config
from botocore.exceptions import ClientError
url, bucket, ca = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=url, verify=ca, aws_access_key_id="testing",
                  aws_secret_access_key="testing", region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3.create_bucket(Bucket=bucket)
try:
    s3.put_object(Bucket=bucket, Key="k", Body=os.urandom(3 << 20))
    got = (200, "")
except ClientError as e:
    got = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
print(json.dumps({"pid": os.getpid(), "put": got}))
"""


@pytest.mark.parametrize("rclone_serve", ["https"], indirect=True)
def test_a_refusal_before_the_body_is_recorded_as_boto3_saw_it(tracer, rclone_serve):  # noqa: F811
    out = json.loads(run_client([sys.executable, "-c", CLIENT, rclone_serve.url,
                                 bucket_name("early"), str(rclone_serve.ca)]).stdout)
    assert out["put"][0] >= 400, out          # the server refused it (411 here)
    recs = tracer.wait_records({out["pid"]}, 2, timeout=30)
    marker_arrives(tracer)
    recs = [r for r in tracer.records_for({out["pid"]}) if r["operation"] == "PutObject"]
    assert len(recs) == 1, recs
    r = recs[0]
    assert (r["status_code"], r["error_code"]) == tuple(out["put"]), r
    assert r["complete"] and r["request_size"] == 0 and r["response_size"] > 0, r
