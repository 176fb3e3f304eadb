"""obstore (Rust: object_store over reqwest, TLS through rustls, which
s3slower cannot read) against an S3 endpoint: put, get, head, delete one
object in an existing bucket (its delete is a DeleteObjects).  Prints one JSON line: pid, each call's result,
the body bytes sent and received.

    python obstore_ops.py ENDPOINT BUCKET BODY_SIZE   (SSL_CERT_FILE: the CA)
"""
import json
import os
import sys

from obstore.store import S3Store

endpoint, bucket, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = S3Store(bucket, endpoint=endpoint, region="us-east-1", access_key_id="testing",
                secret_access_key="testing", virtual_hosted_style_request=False,
                client_options={"allow_http": True})
body = os.urandom(size)
store.put("obj.bin", body)
got = bytes(store.get("obj.bin").bytes())
meta = store.head("obj.bin")
store.delete("obj.bin")
print(json.dumps({"pid": os.getpid(), "get_ok": got == body, "head_size": meta["size"],
                  "body_sent": size, "body_received": len(got)}))
