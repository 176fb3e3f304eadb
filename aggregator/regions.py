"""The AWS region of a request, when it is known (pure).

`region_of(bucket_region, host)`: the response's `x-amz-bucket-region`
header when it has one (S3 sends it on HeadBucket, on redirects and on
some errors), else the region an AWS S3 host name spells
(`s3.eu-west-1.amazonaws.com`, `bucket.s3-us-west-2.amazonaws.com`,
dual-stack, FIPS, access points), else "".  The global endpoint
`s3.amazonaws.com` and hosts of other providers name no region.
"""
from __future__ import annotations

import functools
import re

_AWS_HOST = re.compile(
    r"(?:^|\.)s3(?:-fips|-accesspoint(?:-fips)?|-object-lambda|-control)?[.-]"
    r"(?:dualstack\.)?([a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})\.amazonaws\.com(?:\.cn)?\.?$")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
# Distinct Host values remembered: a host talks to a few dozen endpoints.
MAX_CACHED = 1024


def region_of(bucket_region: str, host: str) -> str:
    if bucket_region:
        return bucket_region if _REGION.fullmatch(bucket_region) else ""
    return host_region(host)


@functools.lru_cache(maxsize=MAX_CACHED)
def host_region(host: str) -> str:
    """The region an S3 host name (with or without its :port) spells, or ""."""
    name = host.rpartition(":")[0] if host[-1:].isdigit() and ":" in host else host
    m = _AWS_HOST.search(name.lower())
    return m.group(1) if m else ""
