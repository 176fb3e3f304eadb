"""How big a request was, in four classes, and how fast its object bytes moved (pure).

`size_class(nbytes)`: the class of the body bytes a request moved (sent plus
received: a PUT's object, a GET's), one of SIZE_CLASSES; its bounds are
where S3 clients change behaviour (1 MiB: small objects; 16 MiB: the CLI's
and boto3's multipart part; 128 MiB: large, streaming objects).

`transfer_rate(...)`: bytes per second of body transfer for object reads and
writes (TRANSFER_OPERATIONS): a write's request body from the request's first
byte to its last, a read's response body from its first byte to its last.
None for other operations, no body, or a body that moved within one call
(no measurable time).
"""
from __future__ import annotations

from typing import Optional

MIB = 1024 * 1024
SIZE_CLASSES = ("<1MiB", "1-16MiB", "16-128MiB", ">=128MiB")
READS = frozenset({"GetObject"})
WRITES = frozenset({"PutObject", "UploadPart"})
TRANSFER_OPERATIONS = READS | WRITES


def size_class(nbytes: int) -> str:
    if nbytes < MIB:
        return "<1MiB"
    if nbytes < 16 * MIB:
        return "1-16MiB"
    return "16-128MiB" if nbytes < 128 * MIB else ">=128MiB"


def transfer_rate(operation: str, request_size: int, response_size: int,
                  send_ns: int, receive_ns: int) -> Optional[float]:
    """Bytes/s; `send_ns`: the request body's time, `receive_ns`: the response body's."""
    if operation in WRITES:
        nbytes, ns = request_size, send_ns
    elif operation in READS:
        nbytes, ns = response_size, receive_ns
    else:
        return None
    return nbytes * 1e9 / ns if nbytes > 0 and ns > 0 else None
