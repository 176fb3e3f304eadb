"""HTTP/1.1 message heads: where one may start, and what one says (pure).

`start_line_at` tells whether a request line or status line begins at an
offset of a buffer (yes / maybe, more bytes needed / no), so the parser can
look for the next message start in traffic that began mid-message.
`parse_head` turns a head's bytes (start line and header lines, without the
blank line) into a `Head`, or None when it is not well formed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

# A head larger than this is not S3 (AWS caps request headers at 8 KiB; h11's
# default limit is 16 KiB): treat it as garbage and resynchronise.
MAX_HEAD_BYTES = 32 * 1024
# A request line: method, target, version.  S3 keys are up to 1 KiB (3 KiB
# percent-encoded) and a presigned query adds ~1.5 KiB; 16 KiB leaves room
# and bounds what a candidate start line may hold while it waits for its end.
MAX_START_LINE = 16 * 1024

_REQUEST_START = re.compile(
    rb"(?:GET|PUT|POST|HEAD|DELETE|OPTIONS|PATCH) [!-~]+ HTTP/1\.[01]\r\n")
_METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ")
_RESPONSE_START = re.compile(rb"HTTP/1\.[01] [1-5][0-9][0-9][ \r]")
RESPONSE_START_LEN = 13            # what _RESPONSE_START needs to decide
_RESPONSE_PREFIX = re.compile(rb"H(?:T(?:T(?:P(?:/(?:1(?:\.(?:[01](?: (?:[1-5][0-9]{0,2})?)?)?)?)?)?)?)?)?\Z")

YES, MAYBE, NO = 1, 0, -1


# slots, not frozen (cheaper to build on the per-message path); never mutated.
@dataclass(slots=True)
class Head:
    is_request: bool
    method: str           # requests
    target: str           # requests
    status: int           # responses
    headers: dict[str, str]
    start_ns: int         # entry of the call carrying the first byte
    first_byte_end_ns: int  # return of that call
    source: int


def start_line_at(buf: bytes, p: int, is_request: bool) -> int:
    """YES: a start line begins at p; MAYBE: it may, more bytes needed; NO: it does not."""
    if is_request:
        e = buf.find(b"\n", p)
        if e < 0:
            n = min(len(buf) - p, 8)
            head = buf[p:p + n]
            ok = any(m[:n] == head if n <= len(m) else head.startswith(m) for m in _METHODS)
            return MAYBE if ok and len(buf) - p <= MAX_START_LINE else NO
        return YES if _REQUEST_START.fullmatch(buf, p, e + 1) else NO
    if len(buf) - p >= RESPONSE_START_LEN:
        return YES if _RESPONSE_START.match(buf, p) else NO
    return MAYBE if _RESPONSE_PREFIX.match(buf, p) else NO


def parse_head(head: bytes | bytearray, is_request: bool,
               stamp: tuple[int, int, int]) -> Optional[Head]:
    """The head (start line and header lines, no blank line), or None if malformed.
    Header names are lower-cased; repeated headers are joined with ", ".  `stamp`:
    (entry, return, source) of the call that carried its first byte."""
    lines = head.decode("latin-1").split("\r\n")    # decoded once: the hot path
    parts = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name, sep, value = raw.partition(":")
        if not sep:
            return None
        key = _KEYS.get(name) or _key(name)
        if key is None:
            return None
        headers[key] = value.strip()
    if len(headers) != len(lines) - 1:      # a name repeated: join its values
        headers = _joined(lines)
    start, first_end, source = stamp
    if is_request:
        if len(parts) != 3:
            return None
        return Head(True, parts[0], parts[1], 0, headers, start, first_end, source)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return None
    return Head(False, "", "", status, headers, start, first_end, source)


# Header name as sent -> its key: clients send the same few names in the same
# spelling on every request, so a name is checked and lower-cased once.
MAX_KEYS = 1024
_KEYS: dict[str, str] = {}


def _key(name: str) -> Optional[str]:
    """The key of a header name, None when it is no name (empty, or spaces
    around it)."""
    if not name or name != name.strip():
        return None
    key = name.lower()
    if len(_KEYS) < MAX_KEYS:
        _KEYS[name] = key
    return key


def _joined(lines: list[str]) -> dict[str, str]:
    """The headers of well-formed header lines, repeated names' values joined."""
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name, _, value = raw.partition(":")
        key = _KEYS.get(name) or name.lower()
        val = value.strip()
        headers[key] = headers[key] + ", " + val if key in headers else val
    return headers
