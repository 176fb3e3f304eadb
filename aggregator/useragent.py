"""Which client sent a request: `User-Agent` and `x-amz-user-agent` to a name (pure).

`client_of(user_agent, amz_user_agent)` returns (client, version): client is
one of CLIENTS, the most specific product the two headers name (a boto3 call
is `boto3` although botocore sends it, the AWS CLI `aws-cli` although it runs
botocore, mc `minio-go`, pyarrow `aws-sdk-cpp`); `other` when none is known.
The version is that product token's, as it wrote it (rclone's "v1.75.2").

A header is a list of product tokens, `name/version`, split by spaces; the
rest (comments in parentheses, `md/...`, `os/...`) names no client.  One
process sends the same few strings on every request, so results are kept per
pair of header values (the MAX_CACHED most recent): a request costs one
cache lookup.
"""
from __future__ import annotations

import functools
import re

OTHER = "other"
# (token name, lower-case) -> (client, rank): the lowest rank among a
# request's tokens wins.  Tools and wrappers (0) before the SDKs they run on
# (1-2), SDKs before the runtimes under them (3), plain HTTP tools last (4).
_PRODUCTS = {
    "aws-cli": ("aws-cli", 0), "rclone": ("rclone", 0), "s5cmd": ("s5cmd", 0),
    "s3cmd": ("s3cmd", 0), "duckdb": ("duckdb", 0), "mc": ("minio-go", 0),
    "warp": ("minio-go", 0), "aiobotocore": ("aiobotocore", 0),
    "boto3": ("boto3", 1), "minio-py": ("minio-py", 1), "minio-go": ("minio-go", 1),
    "botocore": ("botocore", 2), "aws-sdk-java": ("aws-sdk-java", 2),
    "aws-sdk-go": ("aws-sdk-go", 2), "aws-sdk-go-v2": ("aws-sdk-go-v2", 2),
    "aws-sdk-js": ("aws-sdk-js", 2), "aws-sdk-nodejs": ("aws-sdk-js", 2),
    "aws-sdk-cpp": ("aws-sdk-cpp", 2),
    "aws-crt-python": ("aws-crt", 3), "aws-crt-java": ("aws-crt", 3),
    "aws-crt-cpp": ("aws-crt", 3), "aws-crt-nodejs": ("aws-crt", 3),
    "aws-c-s3": ("aws-crt", 3), "aws-crt": ("aws-crt", 3), "crts3nativeclient": ("aws-crt", 3),
    "curl": ("curl", 4), "wget": ("wget", 4),
}
CLIENTS = tuple(sorted({c for c, _ in _PRODUCTS.values()})) + (OTHER,)
_VERSION = re.compile(r"[0-9A-Za-z.+_~-]{1,32}")
# Distinct (User-Agent, x-amz-user-agent) pairs remembered: a host runs a
# few dozen clients; botocore's feature metadata (`m/...`) adds a few each.
MAX_CACHED = 4096


@functools.lru_cache(maxsize=MAX_CACHED)
def client_of(user_agent: str, amz_user_agent: str = "") -> tuple[str, str]:
    """(client, version) of a request's two headers ("" when absent)."""
    best, best_rank, version = OTHER, 99, ""
    for token in (amz_user_agent + " " + user_agent).split():
        name, sep, rest = token.partition("/")
        if not sep:
            continue
        known = _PRODUCTS.get(name.lower())
        if known is not None and known[1] < best_rank:
            best, best_rank = known
            m = _VERSION.match(rest)
            version = m.group(0) if m else ""
    return best, version
