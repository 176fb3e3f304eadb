"""Credentials never reach an output (SPEC §8, STYLE habit 14). Pure.

Invariants:
  * Headers in SENSITIVE_HEADERS (compared case-insensitively) are never
    output, logged or exported; callers drop them by `is_sensitive_header`.
  * `redact_target` masks presigned-URL credentials in a request target:
      - A *presigned* query is one that carries a parameter of PRESIGN_PARAMS
        (names compared case-insensitively after percent-decoding).  Then
        every parameter value is replaced by MASK; names stay, so the output
        still shows which parameters were there.  X-Amz-Date, X-Amz-Expires,
        X-Amz-SignedHeaders and Expires are masked with the rest but do not
        trigger masking on their own: they are not secret, and `Expires` is
        too generic a name to treat as a credential.
      - The values of ALWAYS_MASKED parameters are masked wherever they
        appear in the target, in any letter case, also percent-encoded once
        or twice inside another parameter (a presigned URL passed as a value)
        or after the fragment mark.
      - A target without any of these is returned unchanged.
  * Never raises on a str; the result never contains a value that followed
    an ALWAYS_MASKED name in the input.
"""
from __future__ import annotations

import re
from urllib.parse import unquote_plus

MASK = "REDACTED"

SENSITIVE_HEADERS: frozenset[str] = frozenset({
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "set-cookie2",
    "x-amz-security-token",                    # STS session token
    "x-amz-s3session-token",                   # S3 Express CreateSession token
    "x-amz-server-side-encryption-customer-key",              # SSE-C key
    "x-amz-copy-source-server-side-encryption-customer-key",  # SSE-C key
})

# SigV4 query auth and SigV2 query auth: any one of these marks a presigned URL.
PRESIGN_PARAMS: frozenset[str] = frozenset({
    "x-amz-signature", "x-amz-credential", "x-amz-security-token",
    "x-amz-algorithm", "signature", "awsaccesskeyid",
})
ALWAYS_MASKED: frozenset[str] = frozenset({
    "x-amz-signature", "x-amz-credential", "x-amz-security-token",
})

_EQ = r"(?:=|%3d|%253d)"
_END = r"(?:&|%26|%2526|#|\s)"
_DASH = r"(?:-|%2d)"
_ALWAYS = re.compile(
    r"(?i)(x" + _DASH + "amz" + _DASH
    + r"(?:signature|credential|security" + _DASH + r"token)" + _EQ + r")"
    r"((?:(?!" + _END + r").)*)")


def is_sensitive_header(name: str) -> bool:
    """True for a header whose value must never be output."""
    return isinstance(name, str) and name.strip().lower() in SENSITIVE_HEADERS


def _param_name(item: str) -> str:
    return unquote_plus(item.partition("=")[0]).strip().lower()


def _mask_values(query: str) -> str:
    out = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        out.append(f"{name}={MASK}" if eq else item)
    return "&".join(out)


def _mask_presigned(target: str) -> str:
    head, sep, rest = target.partition("?")
    if not sep:
        return target
    query, hash_mark, fragment = rest.partition("#")
    if not any(_param_name(item) in PRESIGN_PARAMS for item in query.split("&")):
        return target
    return f"{head}?{_mask_values(query)}{hash_mark}{fragment}"


def _mask_always(target: str) -> str:
    return _ALWAYS.sub(lambda m: m.group(1) + (MASK if m.group(2) else ""), target)


def redact_target(target: str) -> str:
    """The request target with presigned-URL credentials masked."""
    if not isinstance(target, str):
        return ""
    return _mask_always(_mask_presigned(target))
