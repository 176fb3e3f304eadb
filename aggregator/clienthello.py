"""The server name (SNI) a TLS ClientHello asks for (RFC 8446 §4.1.2, RFC 6066 §3).

Pure and total: any bytes in, a host name or "" out, never an exception
(tests/test_clienthello.py fuzzes it).  The kernel copies the first call's
bytes of a connection, at most one capture (S3S_MAX_CAPTURE); a hello cut
short before its server_name extension gives "".  Only one TLS record is
read: a ClientHello split over records is rare and gives "".
"""
from __future__ import annotations

RECORD_HANDSHAKE = 0x16
HANDSHAKE_CLIENT_HELLO = 0x01
EXT_SERVER_NAME = 0x0000
NAME_HOST = 0x00
MAX_NAME = 253                  # a DNS name's longest text form


def _u16(b: bytes, i: int) -> int:
    return b[i] << 8 | b[i + 1]


def server_name(data: bytes) -> str:
    """The host_name of the server_name extension, "" when there is none."""
    b = bytes(data)
    if len(b) < 5 or b[0] != RECORD_HANDSHAKE or b[1] != 3:
        return ""
    end = min(len(b), 5 + _u16(b, 3))
    i = 5                                   # the handshake message
    if end < i + 4 or b[i] != HANDSHAKE_CLIENT_HELLO:
        return ""
    end = min(end, i + 4 + (b[i + 1] << 16 | _u16(b, i + 2)))
    i += 4 + 2 + 32                         # version, random
    for width in (1, 2, 1):                 # session id, cipher suites, compression
        if i + width > end:
            return ""
        i += width + (b[i] if width == 1 else _u16(b, i))
    if i + 2 > end:
        return ""
    end = min(end, i + 2 + _u16(b, i))
    i += 2
    while i + 4 <= end:
        kind, size = _u16(b, i), _u16(b, i + 2)
        i += 4
        if kind == EXT_SERVER_NAME:
            return _host_name(b[i:min(end, i + size)])
        i += size
    return ""


def _host_name(ext: bytes) -> str:
    if len(ext) < 2:
        return ""
    end = min(len(ext), 2 + _u16(ext, 0))
    i = 2
    while i + 3 <= end:
        kind, size = ext[i], _u16(ext, i + 1)
        i += 3
        name = ext[i:i + size]
        if kind == NAME_HOST and len(name) == size and 0 < size <= MAX_NAME:
            text = name.decode("ascii", "replace")
            return text if text.isprintable() and " " not in text else ""
        i += size
    return ""
