"""S3 operation classification: every operation of the model, endpoints, keys, garbage.

The per-operation cases are generated from aggregator/s3model.json (itself
generated from botocore's S3 model): a request is built from each operation's
documented method, path template, required query keys and distinguishing
headers, and must classify as that operation.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from s3slower.aggregator import s3ops
from s3slower.aggregator.s3ops import S3Target, classify, is_path_style

MODEL = json.loads(s3ops.MODEL_FILE.read_text(encoding="utf-8"))
OPERATIONS = MODEL["operations"]

# Operations whose documented signatures (method + path + query + headers) are
# identical to another operation's: a request cannot tell them apart.
INDISTINGUISHABLE = {
    "GetBucketLifecycle": ("GetBucketLifecycleConfiguration",
                           "deprecated; same GET /{Bucket}?lifecycle as its successor"),
    "PutBucketLifecycle": ("PutBucketLifecycleConfiguration",
                           "deprecated; same PUT /{Bucket}?lifecycle as its successor"),
    "GetBucketNotification": ("GetBucketNotificationConfiguration",
                              "deprecated; same GET /{Bucket}?notification as its successor"),
    "PutBucketNotification": ("PutBucketNotificationConfiguration",
                              "deprecated; same PUT /{Bucket}?notification as its successor"),
}
# Same signature as another operation, told apart only by the endpoint the
# model routes it to (UseS3ExpressControlEndpoint): GET / is ListBuckets on
# any other host.
ENDPOINT_HINT = {"ListDirectoryBuckets": "s3express-control.us-west-2.amazonaws.com"}

BUCKET, KEY, RAW_KEY = "amzn-bucket", "dir/report 2024.csv", "dir/report%202024.csv"


def _request(name: str, style: str, query_form: str) -> tuple[str, str, dict, S3Target]:
    op = OPERATIONS[name]
    host = ENDPOINT_HINT.get(name, "s3.us-east-1.amazonaws.com")
    path, bucket, key = "/", "", ""
    if op.get("literal"):
        path = op["literal"]
    elif op["bucket"]:
        bucket, key = BUCKET, KEY if op["key"] else ""
        rest = RAW_KEY if op["key"] else ""
        if style == "virtual":
            host, path = f"{BUCKET}.s3.us-east-1.amazonaws.com", "/" + rest
        else:
            path = f"/{BUCKET}/{rest}" if rest else f"/{BUCKET}"
    items = []
    for k, fixed in op["query"].items():
        if fixed is not None:
            items.append(f"{k}={fixed}")
        else:
            items.append(k if query_form == "bare" else f"{k}=v-1")
    target = path + ("?" + "&".join(items) if items else "")
    headers = {"host": host, **{h: "/src-bucket/src-key" for h in op.get("headers", ())}}
    return op["method"], target, headers, S3Target(name, bucket, key)


def _cases():
    for name in sorted(OPERATIONS):
        op = OPERATIONS[name]
        styles = ["path", "virtual"] if op["bucket"] else ["path"]
        for style in styles:
            for form in ("bare", "valued"):
                yield pytest.param(name, style, form, id=f"{name}-{style}-{form}")


@pytest.mark.parametrize("name,style,form", list(_cases()))
def test_every_model_operation_classifies_from_its_signature(name, style, form):
    method, target, headers, expected = _request(name, style, form)
    twin = INDISTINGUISHABLE.get(name, (name, ""))[0]
    assert classify(method, target, headers) == S3Target(twin, expected.bucket, expected.key)


@pytest.mark.parametrize("name", sorted(n for n, op in OPERATIONS.items() if not op.get("literal")))
def test_x_id_names_the_operation_when_present(name):
    method, target, headers, expected = _request(name, "path", "valued")
    sep = "&" if "?" in target else "?"
    assert classify(method, f"{target}{sep}x-id={name}", headers) == expected


@pytest.mark.parametrize("name", sorted(INDISTINGUISHABLE))
def test_indistinguishable_operations_really_share_a_signature(name):
    twin, _reason = INDISTINGUISHABLE[name]
    mine, theirs = dict(OPERATIONS[name]), dict(OPERATIONS[twin])
    assert mine.pop("deprecated") is True and "deprecated" not in theirs
    assert mine == theirs


def test_only_the_listed_operations_share_a_signature():
    by_signature: dict[str, list[str]] = {}
    for name, op in OPERATIONS.items():
        wire = {k: v for k, v in op.items() if k not in ("deprecated", "control", "accepts")}
        by_signature.setdefault(json.dumps(wire, sort_keys=True), []).append(name)
    shared = {n for names in by_signature.values() if len(names) > 1 for n in names}
    listed = set(INDISTINGUISHABLE) | set(ENDPOINT_HINT)
    twins = {twin for twin, _ in INDISTINGUISHABLE.values()} | {"ListBuckets"}
    assert shared == listed | twins
    assert len(OPERATIONS) == len(s3ops.INDEX.operations) >= 100


def _generator():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "gen_s3model", s3ops.MODEL_FILE.parent.parent / "packaging" / "gen_s3model.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def test_checked_in_model_agrees_with_installed_botocore(capsys):
    """Whatever botocore is installed (a test dependency, through boto3): every
    operation both know is described alike -- method, path shape, required
    query, distinguishing headers, accepted markers, flags -- with the derived
    facts (headers, accepts) worked out among the model's operations only, as
    the generator would have done for them.  Operations only one side has are
    allowed and printed: a newer botocore knows operations this model file
    predates (they classify as Unknown until packaging/gen_s3model.py is
    rerun); AWS does not withdraw operations, so "model only" should stay
    empty.  With the very botocore that generated the file, the file must be
    its output byte for byte."""
    import botocore

    gen = _generator()
    source = MODEL["source"]["botocore"]
    known = set(gen.load_model()["operations"])
    newer, missing = sorted(known - set(OPERATIONS)), sorted(set(OPERATIONS) - known)
    regenerated = gen.build(only=set(OPERATIONS))["operations"]
    disagree = {n: {"model file": OPERATIONS[n], f"botocore {botocore.__version__}": op}
                for n, op in regenerated.items() if OPERATIONS[n] != op}
    with capsys.disabled():
        print(f"\n  s3 model (botocore {source}) vs installed botocore {botocore.__version__}: "
              f"{len(regenerated)} operations compared, {len(disagree)} disagree; "
              f"only in botocore: {newer or 'none'}; only in the model: {missing or 'none'}")
    assert not disagree, (
        f"aggregator/s3model.json (from botocore {source}) and the installed botocore "
        f"{botocore.__version__} describe these operations differently: {json.dumps(disagree)}; "
        "a newer botocore: rerun packaging/gen_s3model.py and review the diff; an older one: "
        "install the test extras (pyproject.toml pins the botocore the file came from)")
    assert len(regenerated) == len(OPERATIONS) - len(missing) >= 100
    if botocore.__version__ == source:
        assert not newer and not missing
        assert gen.render(gen.build()) == s3ops.MODEL_FILE.read_text(encoding="utf-8")


# --- the operations the product cares most about, written out by hand -------

LOCAL = {"host": "127.0.0.1:9000"}
COPY = {**LOCAL, "x-amz-copy-source": "/src/obj"}


@pytest.mark.parametrize("method,target,headers,operation", [
    ("GET", "/b?list-type=2&continuation-token=abc&prefix=x", LOCAL, "ListObjectsV2"),
    ("GET", "/b?prefix=x&delimiter=%2F", LOCAL, "ListObjects"),
    ("GET", "/b", LOCAL, "ListObjects"),
    ("GET", "/", LOCAL, "ListBuckets"),
    ("HEAD", "/b", LOCAL, "HeadBucket"),
    ("HEAD", "/b/k", LOCAL, "HeadObject"),
    ("GET", "/b/k", LOCAL, "GetObject"),
    ("GET", "/b/k?partNumber=2", LOCAL, "GetObject"),
    ("GET", "/b/k?versionId=3&response-content-type=text%2Fplain", LOCAL, "GetObject"),
    ("PUT", "/b/k", LOCAL, "PutObject"),
    ("PUT", "/b/k", COPY, "CopyObject"),
    ("PUT", "/b/k?partNumber=1&uploadId=u", LOCAL, "UploadPart"),
    ("PUT", "/b/k?partNumber=1&uploadId=u", COPY, "UploadPartCopy"),
    ("POST", "/b?delete", LOCAL, "DeleteObjects"),
    ("POST", "/b?delete=", LOCAL, "DeleteObjects"),
    ("POST", "/b/k?uploads", LOCAL, "CreateMultipartUpload"),
    ("POST", "/b/k?uploads=", LOCAL, "CreateMultipartUpload"),
    ("POST", "/b/k?uploadId=u", LOCAL, "CompleteMultipartUpload"),
    ("DELETE", "/b/k?uploadId=u", LOCAL, "AbortMultipartUpload"),
    ("GET", "/b/k?uploadId=u&max-parts=10", LOCAL, "ListParts"),
    ("GET", "/b?uploads", LOCAL, "ListMultipartUploads"),
    ("DELETE", "/b/k", LOCAL, "DeleteObject"),
    ("GET", "/b?location", LOCAL, "GetBucketLocation"),
    ("GET", "/b?versions&prefix=a", LOCAL, "ListObjectVersions"),
    ("GET", "/b?versioning", LOCAL, "GetBucketVersioning"),
    ("GET", "/b?policy", LOCAL, "GetBucketPolicy"),
    ("PUT", "/b?cors", LOCAL, "PutBucketCors"),
    ("GET", "/b?lifecycle", LOCAL, "GetBucketLifecycleConfiguration"),
    ("GET", "/b?tagging", LOCAL, "GetBucketTagging"),
    ("GET", "/b/k?tagging", LOCAL, "GetObjectTagging"),
    ("PUT", "/b/k?acl", LOCAL, "PutObjectAcl"),
    ("GET", "/b?analytics&id=a1", LOCAL, "GetBucketAnalyticsConfiguration"),
    ("GET", "/b?analytics", LOCAL, "ListBucketAnalyticsConfigurations"),
    ("POST", "/b/k?select&select-type=2", LOCAL, "SelectObjectContent"),
    ("PUT", "/b", LOCAL, "CreateBucket"),
    ("DELETE", "/b", LOCAL, "DeleteBucket"),
    ("get", "/b/k", LOCAL, "GetObject"),
])
def test_common_operations(method, target, headers, operation):
    assert classify(method, target, headers).operation == operation


@pytest.mark.parametrize("method,target,headers", [
    ("GET", "/b?acl&tagging", LOCAL),                 # two markers, two operations
    ("GET", "/b/k?uploads", LOCAL),                   # a bucket marker on an object
    ("PUT", "/b/k?partNumber=1", LOCAL),              # half of UploadPart
    ("GET", "/b?list-type=1", LOCAL),                 # ListObjectsV2 needs list-type=2
    ("HEAD", "/", LOCAL),
    ("PATCH", "/b/k", LOCAL),
    ("BREW", "/b/k", LOCAL),
    ("POST", "/b/k", LOCAL),
    ("DELETE", "/b?id=7", LOCAL),
])
def test_unsure_is_unknown_but_keeps_bucket_and_key(method, target, headers):
    result = classify(method, target, headers)
    assert result.operation == "Unknown"
    assert result.bucket == ("b" if target.startswith("/b") else "")


# --- endpoints ------------------------------------------------------------

@pytest.mark.parametrize("host", [
    "", "127.0.0.1", "127.0.0.1:9000", "10.1.2.3:443", "[::1]", "[::1]:9000",
    "[fe80::1%25eth0]:80", "::1", "localhost", "localhost:4566", "LOCALHOST",
    "minio", "minio:9000", "s3.amazonaws.com", "s3.us-west-2.amazonaws.com",
    "s3.dualstack.us-west-2.amazonaws.com", "s3-external-1.amazonaws.com",
    "s3-us-west-2.amazonaws.com", "s3.cn-north-1.amazonaws.com.cn",
    "s3-fips.us-gov-west-1.amazonaws.com", "s3express-control.us-west-2.amazonaws.com",
    "vpce-1a2b3c4d-5e6f.s3.us-east-1.vpce.amazonaws.com", "s3.amazonaws.com.",
    "S3.Amazonaws.com:443", "minio.storage.corp.example", "rgw.example.com:7480",
    "storage.googleapis.com", "nyc3.digitaloceanspaces.com",
    "s3.localhost.localstack.cloud:4566",
])
def test_path_style_endpoints(host):
    assert is_path_style(host)
    assert classify("GET", "/bkt/some/key", {"host": host}) == S3Target("GetObject", "bkt", "some/key")


@pytest.mark.parametrize("host,bucket", [
    ("bkt.s3.amazonaws.com", "bkt"),
    ("bkt.s3.amazonaws.com:443", "bkt"),
    ("bkt.s3.eu-west-1.amazonaws.com", "bkt"),
    ("my.dotted.bkt.s3.eu-west-1.amazonaws.com", "my.dotted.bkt"),
    ("bkt.s3-eu-west-1.amazonaws.com", "bkt"),
    ("bkt.s3.dualstack.us-east-1.amazonaws.com", "bkt"),
    ("bkt.s3-accelerate.amazonaws.com", "bkt"),
    ("bkt.s3-accelerate.dualstack.amazonaws.com", "bkt"),
    ("s3-logs.s3.amazonaws.com", "s3-logs"),
    ("BKT.S3.AMAZONAWS.COM", "bkt"),
    ("bkt.vpce-1a2b3c4d-5e6f.s3.us-east-1.vpce.amazonaws.com", "bkt"),
    ("dir--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com", "dir--usw2-az1--x-s3"),
    ("bkt.s3.localhost.localstack.cloud:4566", "bkt"),
    ("bkt.s3.wasabisys.com", "bkt"),
    ("bkt.storage.googleapis.com", "bkt"),
    ("bkt.nyc3.digitaloceanspaces.com", "bkt"),
])
def test_virtual_hosted_endpoints(host, bucket):
    assert not is_path_style(host)
    assert classify("GET", "/some/key", {"host": host}) == S3Target("GetObject", bucket, "some/key")
    assert classify("GET", "/?list-type=2", {"host": host}) == S3Target("ListObjectsV2", bucket, "")
    assert classify("HEAD", "/", {"host": host}) == S3Target("HeadBucket", bucket, "")


@pytest.mark.parametrize("entry", ["bkt.s3.amazonaws.com", "bkt.s3.amazonaws.com:443",
                                   "BKT.s3.amazonaws.com", "https://bkt.s3.amazonaws.com"])
def test_path_style_hosts_override(entry):
    hosts = frozenset({entry})
    assert is_path_style("bkt.s3.amazonaws.com:9000", hosts)
    assert (classify("GET", "/other/k", {"host": "bkt.s3.amazonaws.com"}, path_style_hosts=hosts)
            == S3Target("GetObject", "other", "k"))


def test_odd_argument_types_do_not_raise():
    assert classify("GET", "/b/k", None) == S3Target("GetObject", "b", "k")
    assert classify("GET", "/k", {"host": "b.s3.amazonaws.com"},
                    path_style_hosts={"b.s3.amazonaws.com"}) == S3Target("ListObjects", "k", "")


def test_ipv6_host_with_port():
    assert classify("PUT", "/b/k", {"host": "[2001:db8::7]:9000"}) == S3Target("PutObject", "b", "k")


# --- keys -------------------------------------------------------------------

@pytest.mark.parametrize("raw,key", [
    ("a%20b", "a b"),
    ("a+b", "a+b"),                         # + in a path is a plus
    ("caf%C3%A9/%E6%97%A5%E6%9C%AC", "café/日本"),
    ("caf\u00e9", "caf\u00e9"),             # already decoded by the sender
    ("dir%2Fsub%2Ffile", "dir/sub/file"),
    ("dir/sub/", "dir/sub/"),
    ("/leading", "/leading"),
    ("100%25", "100%"),
    ("bad%ZZ%", "bad%ZZ%"),
    ("%FF", "\ufffd"),                      # not UTF-8: replaced, not raised
])
def test_url_encoded_keys(raw, key):
    assert classify("GET", f"/b/{raw}", LOCAL) == S3Target("GetObject", "b", key)
    vhost = {"host": "b.s3.amazonaws.com"}
    assert classify("GET", f"/{raw}?versionId=1", vhost) == S3Target("GetObject", "b", key)


def test_encoded_bucket_segment_and_query_name():
    assert classify("GET", "/b?list%2Dtype=2", LOCAL).operation == "ListObjectsV2"


# --- absolute-form targets ----------------------------------------------------

@pytest.mark.parametrize("target,headers,expected", [
    ("http://127.0.0.1:9000/b/k", {}, S3Target("GetObject", "b", "k")),
    ("https://bkt.s3.amazonaws.com/k%201", {"host": "ignored:1"}, S3Target("GetObject", "bkt", "k 1")),
    ("HTTP://[::1]:9000/b?list-type=2", {}, S3Target("ListObjectsV2", "b", "")),
    ("http://s3.amazonaws.com", {}, S3Target("ListBuckets", "", "")),
    ("http://bkt.s3.amazonaws.com?location", {}, S3Target("GetBucketLocation", "bkt", "")),
    ("http://user:pw@127.0.0.1/b/k#frag", {}, S3Target("GetObject", "b", "k")),
])
def test_absolute_form_targets(target, headers, expected):
    assert classify("GET", target, headers) == expected


# --- garbage ----------------------------------------------------------------

@pytest.mark.parametrize("method,target,headers", [
    ("GET", "", LOCAL), ("GET", "*", LOCAL), ("CONNECT", "s3.amazonaws.com:443", LOCAL),
    ("GET", "ftp://h/b/k", LOCAL), ("GET", "b/k", LOCAL), ("", "", {}),
    (None, "/b/k", LOCAL), ("GET", None, LOCAL), ("GET", b"/b/k", LOCAL),
])
def test_garbage_targets_are_unknown(method, target, headers):
    assert classify(method, target, headers) == S3Target("Unknown", "", "")


def test_garbage_host_values_do_not_raise():
    for host in (None, 7, b"b.s3.amazonaws.com", "[", "]:", ":::::", "a..b", "." * 300):
        result = classify("GET", "/b/k", {"host": host})
        assert isinstance(result, S3Target)
        assert isinstance(is_path_style(host), bool)


@settings(max_examples=400, deadline=None)
@given(method=st.text(max_size=8), target=st.text(max_size=80),
       host=st.text(max_size=40), extra=st.dictionaries(st.text(max_size=20), st.text(max_size=20)))
def test_fuzz_never_raises(method, target, host, extra):
    result = classify(method, target, {**extra, "host": host})
    assert isinstance(result, S3Target)
    assert result.operation == "Unknown" or result.operation in OPERATIONS


@settings(max_examples=200, deadline=None)
@given(path=st.text(alphabet="/%?&=+#abcXYZ019-._~é ", max_size=60))
def test_fuzz_origin_form_targets(path):
    result = classify("GET", "/" + path, {"host": "b.s3.amazonaws.com"})
    assert result.bucket == "b"
