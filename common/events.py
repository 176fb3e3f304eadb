"""Python mirror of bpf/s3slower.h (the one event ABI).

tests/test_events_abi.py pins the size and every offset against the C header,
so a change on either side fails loudly instead of decoding garbage.
"""
from __future__ import annotations

import enum
import operator
import struct
from dataclasses import dataclass

from s3slower.common.losses import Loss

COMM_LEN = 16
TAIL_LEN = 16
MAX_CAPTURE = 4096

# start_ns end_ns conn_id pid tid fd len cap_len kind dir source tail_len comm tail
HEADER = struct.Struct("<QQQIIiIIBBBB16s16s")
HEADER_SIZE = HEADER.size  # 80

FIELD_OFFSETS = {
    "start_ns": 0, "end_ns": 8, "conn_id": 16, "pid": 24, "tid": 28, "fd": 32,
    "len": 36, "cap_len": 40, "kind": 44, "dir": 45, "source": 46,
    "tail_len": 47, "comm": 48, "tail": 64,
}


class Kind(enum.IntEnum):
    DATA = 1
    CONNECT = 2
    CLOSE = 3
    EXEC = 4
    EXIT = 5
    MMAP = 6        # collector-internal: never sent to an aggregator
    TLS_HELLO = 7   # an opaque TLS connection's first bytes (its ClientHello)
    OPAQUE = 8      # an opaque TLS connection's byte counts (OPAQUE below)


# struct s3s_opaque, the data of an OPAQUE record
OPAQUE = struct.Struct("<QQII")     # bytes_sent bytes_received closed pad
OPAQUE_FIELD_OFFSETS = {"bytes_sent": 0, "bytes_received": 8, "closed": 16}
OPAQUE_EVERY_NS = 10_000_000_000    # S3S_OPAQUE_EVERY_NS


class Direction(enum.IntEnum):
    EGRESS = 0
    INGRESS = 1


class Source(enum.IntEnum):
    SYSCALL = 0
    OPENSSL = 1
    GNUTLS = 2
    NSS = 3
    GO = 4
    S2N = 5

    @property
    def tls_name(self) -> str:
        return "none" if self is Source.SYSCALL else self.name.lower()


# Slots of the kernel's `lost` per-CPU array (bpf/s3slower.bpf.c LOST_*).
KERNEL_LOSS_SLOTS = {0: Loss.RINGBUF, 1: Loss.TLS_NO_SOCKET, 2: Loss.THREAD_STATE}


class MalformedEvent(ValueError):
    """A record from the kernel or the wire that does not fit the ABI."""


# slots, not frozen: a frozen dataclass's __init__ costs ~1 µs more per
# instance on the per-event path.  Treated as immutable all the same.
@dataclass(slots=True)
class Event:
    start_ns: int
    end_ns: int
    conn_id: int
    pid: int
    tid: int
    fd: int
    length: int
    kind: int
    direction: int
    source: int
    comm: str
    data: bytes
    tail: bytes

    @property
    def truncated(self) -> bool:
        return self.length > len(self.data)


# One header field without decoding the record: the collector reads kind and
# pid of every record it drains, replay the return stamp of every record.
# Callers pass whole records (at least HEADER_SIZE bytes).
peek_kind = operator.itemgetter(FIELD_OFFSETS["kind"])   # C speed: per record
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


def peek_pid(raw: bytes) -> int:
    return _U32.unpack_from(raw, FIELD_OFFSETS["pid"])[0]


def peek_end_ns(raw: bytes) -> int:
    return _U64.unpack_from(raw, FIELD_OFFSETS["end_ns"])[0]


def decode_event(raw: bytes) -> Event:
    """Decode one ring-buffer record (header + captured bytes)."""
    if len(raw) < HEADER_SIZE:
        raise MalformedEvent(f"record of {len(raw)} bytes is shorter than the header")
    (start, end, conn_id, pid, tid, fd, length, cap_len, kind, direction,
     source, tail_len, comm, tail) = HEADER.unpack_from(raw)
    if cap_len != len(raw) - HEADER_SIZE or cap_len > length and kind == KIND_DATA:
        raise MalformedEvent(f"record claims {cap_len} captured bytes, carries {len(raw) - HEADER_SIZE}")
    if kind not in _KINDS or direction > 1 or source > 5 or tail_len > TAIL_LEN:
        raise MalformedEvent(f"record with kind={kind} dir={direction} source={source}")
    name = _COMMS.get(comm)
    if name is None:
        name = _comm(comm)
    return Event(start, end, conn_id, pid, tid, fd, length, kind, direction, source,
                 name, raw[HEADER_SIZE:], tail[:tail_len])


_KINDS = frozenset(int(k) for k in Kind)
KIND_DATA = int(Kind.DATA)      # a plain int: compared for every record
# comm field -> its text: a host's records carry a few hundred thread names
MAX_COMMS = 4096
_COMMS: dict[bytes, str] = {}


def _comm(field: bytes) -> str:
    name = field.split(b"\0", 1)[0].decode("utf-8", "replace")
    if len(_COMMS) < MAX_COMMS:
        _COMMS[field] = name
    return name


def encode_event(ev: Event) -> bytes:
    """The inverse of decode_event: used by tests, replay fixtures and benches."""
    return HEADER.pack(ev.start_ns, ev.end_ns, ev.conn_id, ev.pid, ev.tid, ev.fd,
                       ev.length, len(ev.data), ev.kind, ev.direction, ev.source,
                       len(ev.tail), ev.comm.encode()[:COMM_LEN],
                       ev.tail.ljust(TAIL_LEN, b"\0")) + ev.data
