"""Re-record the real golden captures: real clients against moto on loopback,
recorded with the real tracer (the collector's `--record` code path: every
published message written as it was sent, tests/golden/real/NAME.rec).

Run as root from the repository:  .venv/bin/python tests/golden/make_real.py [NAME ...]
then review `git diff tests/golden/real/*.json`: each NAME.json is regenerated
from what the pipeline makes of the new recording, and must be checked against
what the client did (listed in its "about").

Each client waits for a line on stdin before its first request, so the collector
traces its pid from the start (a shell that `read`s, then `exec`s the AWS CLI or
curl, keeps its pid).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = ROOT / ".venv" / "bin"
sys.path.insert(0, str(HERE.parent))
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "*"}

BOTO3_OPS = r'''
import sys, urllib.request, boto3
from botocore.config import Config
from botocore.exceptions import ClientError
url, verify = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
s3 = boto3.client("s3", endpoint_url=url, verify=verify,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}))
sys.stdin.readline()
s3.create_bucket(Bucket="gold")
s3.put_object(Bucket="gold", Key="dir/a b.txt", Body=b"x" * 1000)
s3.put_object(Bucket="gold", Key="big.bin", Body=b"y" * 3_000_000)
assert len(s3.get_object(Bucket="gold", Key="big.bin")["Body"].read()) == 3_000_000
s3.head_object(Bucket="gold", Key="big.bin")
try:
    s3.get_object(Bucket="gold", Key="missing")
except ClientError:
    pass
s3.copy_object(Bucket="gold", Key="copy.txt", CopySource={"Bucket": "gold", "Key": "dir/a b.txt"})
up = s3.create_multipart_upload(Bucket="gold", Key="mp.bin")["UploadId"]
e1 = s3.upload_part(Bucket="gold", Key="mp.bin", UploadId=up, PartNumber=1,
                    Body=b"p" * 5_242_880)["ETag"]
e2 = s3.upload_part(Bucket="gold", Key="mp.bin", UploadId=up, PartNumber=2, Body=b"q" * 1000)["ETag"]
s3.complete_multipart_upload(Bucket="gold", Key="mp.bin", UploadId=up, MultipartUpload={
    "Parts": [{"ETag": e1, "PartNumber": 1}, {"ETag": e2, "PartNumber": 2}]})
page = s3.list_objects_v2(Bucket="gold", MaxKeys=2)
s3.list_objects_v2(Bucket="gold", MaxKeys=2, ContinuationToken=page["NextContinuationToken"])
s3.delete_objects(Bucket="gold", Delete={"Objects": [{"Key": "copy.txt"}, {"Key": "mp.bin"}]})
signed = s3.generate_presigned_url("get_object", Params={"Bucket": "gold", "Key": "dir/a b.txt"})
ctx = None
if verify:
    import ssl
    ctx = ssl.create_default_context(cafile=verify)
assert len(urllib.request.urlopen(signed, context=ctx).read()) == 1000
'''

SCENARIOS = {
    "boto3_http": ("boto3 over plain HTTP, one process, keep-alive: CreateBucket, PutObject (1000 B), "
                   "PutObject (3 MB), GetObject (3 MB, body beyond the capture), HeadObject, "
                   "GetObject of a missing key (404 NoSuchKey), CopyObject, CreateMultipartUpload, "
                   "UploadPart (5 MiB), UploadPart (1000 B), CompleteMultipartUpload, ListObjectsV2 "
                   "(MaxKeys=2), ListObjectsV2 with the continuation token, DeleteObjects, then a "
                   "presigned GET with urllib (path redacted)", "http", "boto3"),
    "boto3_https": ("the same boto3 sequence over HTTPS (OpenSSL uprobes, tls=openssl)",
                    "https", "boto3"),
    "awscli_cp_http": ("`aws s3 cp` of a 9 MiB file: the CLI's multipart upload "
                       "(CreateMultipartUpload, UploadParts of 8 MiB and 1 MiB from worker "
                       "threads, CompleteMultipartUpload)", "http", "awscli"),
    "curl_http": ("one curl process, keep-alive across `--next`: PutObject of 2 MB with "
                  "`Expect: 100-continue` (curl's default for large uploads), GetObject of "
                  "it, GetObject of a missing key (404 NoSuchKey), and a virtual-hosted "
                  "GetObject (Host: gold.s3.amazonaws.com, which moto serves)",
                  "http", "curl"),
}


def _start_moto(port: int, tls: tuple[Path, Path] | None) -> subprocess.Popen:
    extra = ["-c", str(tls[0]), "-k", str(tls[1])] if tls else []
    return subprocess.Popen([str(VENV / "moto_server"), "-H", "127.0.0.1", "-p", str(port),
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, **ENV))


def _client(kind: str, url: str, ca: str | None, tmp: Path) -> subprocess.Popen:
    env = dict(os.environ, **ENV)
    if kind == "boto3":
        args = [str(VENV / "python"), "-c", BOTO3_OPS, url] + ([ca] if ca else [])
    elif kind == "awscli":
        big = tmp / "nine.bin"
        big.write_bytes(os.urandom(9 * 1024 * 1024))
        aws = f"{VENV / 'aws'} --endpoint-url {url}"
        args = ["sh", "-c", f"{aws} s3 mb s3://gold >/dev/null && read x &&"
                f" exec {aws} s3 cp --quiet {big} s3://gold/nine.bin"]
    else:
        body = tmp / "two.bin"
        body.write_bytes(os.urandom(2_000_000))
        c = "curl -sS --aws-sigv4 aws:amz:us-east-1:s3 --user testing:testing -o /dev/null"
        args = ["sh", "-c", f"{c} -X PUT {url}/gold && read x &&"
                f" exec {c} -T {body} {url}/gold/two.bin --next {c} {url}/gold/two.bin"
                f" --next {c} {url}/gold/missing"
                f" --next {c} -H 'Host: gold.s3.amazonaws.com' {url}/two.bin"]
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)


def record(name: str, about: str, scheme: str, kind: str, tmp: Path) -> None:
    import zmq

    from conftest import free_port, wait_port
    from s3slower.collector import hostprep
    from s3slower.collector.probes import ProgramOptions, Probes
    from s3slower.collector.publisher import Publisher
    from s3slower.collector.service import Collector
    from s3slower.common.targets import Selection

    tls = None
    if scheme == "https":
        tls = (tmp / "cert.pem", tmp / "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(tls[1]), "-out", str(tls[0])], check=True,
                       capture_output=True)
    port = free_port()
    moto = _start_moto(port, tls)
    ctx = zmq.Context()
    sink = ctx.socket(zmq.PULL)
    sink.setsockopt(zmq.LINGER, 0)
    sink.bind(f"inproc://{name}")
    rec = HERE / "real" / f"{name}.rec"
    fd = os.open(rec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    pub = Publisher(ctx, f"inproc://{name}", bind=False, hostname="golden-real",
                    wall_offset_ns=time.time_ns() - time.monotonic_ns(),
                    record_to=os.fdopen(fd, "wb"))
    try:
        wait_port(port)
        hostprep.prepare()
        client = _client(kind, f"{scheme}://127.0.0.1:{port}", str(tls[0]) if tls else None, tmp)
        time.sleep(2.0 if kind == "boto3" else 0.2)      # let it import and load libssl
        opts = ProgramOptions(trace_all=False, self_pid=os.getpid())
        col = Collector(lambda cb: Probes(opts, cb), pub, Selection.build(pids=(client.pid,)))
        stop, ready = threading.Event(), threading.Event()
        th = threading.Thread(target=col.run, args=(stop.is_set, ready.set), daemon=True)
        th.start()
        if not ready.wait(60):
            raise TimeoutError("collector not ready")
        client.stdin.write("go\n")
        client.stdin.flush()
        if client.wait(180) != 0:
            raise RuntimeError(f"{name}: client failed ({client.returncode})")
        time.sleep(1.0)                                 # the last records drain
        stop.set()
        th.join(20)
        col.probes.close()
    finally:
        pub.close()
        sink.close()
        ctx.term()
        moto.terminate()
        moto.wait(10)
    doc_path = rec.with_suffix(".json")
    doc_path.write_text(json.dumps({"about": about, "stream_gap": 0, "expected": []}))
    from golden import harness
    harness.regenerate(rec)
    print(f"{name}: {len(json.loads(doc_path.read_text())['expected'])} records")


def main(names: list[str]) -> None:
    if os.geteuid() != 0:
        sys.exit("make_real.py needs root (it loads the BPF program)")
    (HERE / "real").mkdir(exist_ok=True)
    for name in names or list(SCENARIOS):
        about, scheme, kind = SCENARIOS[name]
        with tempfile.TemporaryDirectory() as tmp:
            record(name, about, scheme, kind, Path(tmp))


if __name__ == "__main__":
    main(sys.argv[1:])
