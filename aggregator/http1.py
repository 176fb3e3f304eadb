"""Sans-I/O HTTP/1.1 parser for *observed* traffic, one direction of one connection.

It is fed `Chunk`s — the bytes one read/write call moved, of which only the
first `len(data)` are visible (the kernel captures a bounded prefix; the rest
is counted, not shown) — and returns events as values:

    Head(...)  a request line or status line with its headers
    End(...)   the message's last byte was seen (body bytes counted)

Invariants:
  * Traffic may start mid-message and may have gaps: the parser looks for the
    next message boundary (SEEKING) rather than rejecting; every byte it had
    to skip is counted in `skipped_bytes`, every framing loss in `gaps`.
  * Nothing but the head of a message and a bounded prefix of an error body
    is ever held (MAX_HEAD_BYTES, ERROR_BODY_KEEP).
  * No exception escapes feed(); malformed input becomes counted state.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

# A head larger than this is not S3 (AWS caps request headers at 8 KiB; h11
# uses 16 KiB): treat it as garbage and resynchronise.
MAX_HEAD_BYTES = 32 * 1024
# Enough of an error body to find the S3 XML <Code> element.
ERROR_BODY_KEEP = 2048
MAX_CHUNK_LINE = 1024

_REQUEST_START = re.compile(
    rb"(?:GET|PUT|POST|HEAD|DELETE|OPTIONS|PATCH) [!-~]+ HTTP/1\.[01]\r\n")
_RESPONSE_START = re.compile(rb"HTTP/1\.[01] [1-5][0-9][0-9][ \r]")
_CHUNKED_END = b"0\r\n\r\n"


@dataclass(slots=True)
class Chunk:
    data: bytes           # visible bytes (a prefix of what the call moved)
    length: int           # bytes the call moved
    start_ns: int         # call entry
    end_ns: int           # call return
    tail: bytes = b""     # last bytes of the call's buffer when length > len(data)
    source: int = 0       # events.Source of the call


@dataclass(frozen=True, slots=True)
class Head:
    is_request: bool
    method: str           # requests
    target: str           # requests
    status: int           # responses
    headers: dict[str, str]
    start_ns: int         # entry of the call carrying the first byte
    first_byte_end_ns: int  # return of that call
    source: int


@dataclass(frozen=True, slots=True)
class End:
    end_ns: int           # return of the call carrying the last byte
    body_bytes: int
    body_prefix: bytes    # kept only for error responses (<= ERROR_BODY_KEEP)
    complete: bool = True  # False: ended by a gap or close before framing said so


ParseEvent = Union[Head, End]


class State(enum.Enum):
    SEEKING = "seeking"
    HEAD = "head"
    BODY_LENGTH = "body-length"
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_CRLF = "chunk-crlf"
    CHUNK_TRAILER = "chunk-trailer"
    CHUNKED_BLIND = "chunked-blind"   # chunk framing lost: watch for the terminator
    BODY_CLOSE = "body-close"


class MessageStream:
    """One direction of one connection.

    For responses, `request_method` returns the method of the request the
    next response answers (HEAD responses have no body).
    """

    def __init__(self, is_request: bool,
                 request_method: Optional[Callable[[], str]] = None):
        self.is_request = is_request
        self._request_method = request_method or (lambda: "")
        self._start_re = _REQUEST_START if is_request else _RESPONSE_START
        self.state = State.SEEKING
        self._head = bytearray()
        self._head_start = (0, 0, 0)
        self._remaining = 0
        self._line = bytearray()
        self._body = 0
        self._keep = False
        self._prefix = bytearray()
        self._last_end = 0
        self.skipped_bytes = 0
        self.gaps = 0
        self.invalid = 0

    # -- public ------------------------------------------------------------
    def feed(self, chunk: Chunk) -> list[ParseEvent]:
        out: list[ParseEvent] = []
        data = chunk.data
        i = 0
        while i < len(data):
            i = self._step(data, i, chunk, out)
        hidden = chunk.length - len(data)
        if hidden > 0:
            self._hidden(hidden, chunk, out)
        self._last_end = chunk.end_ns
        return out

    def close(self) -> list[ParseEvent]:
        """The connection closed: a close-delimited body ends here."""
        if self.state is State.BODY_CLOSE:
            return [self._finish(self._last_end)]
        if self.state is not State.SEEKING:
            self.gaps += 1
            ev = self._finish(self._last_end, complete=False)
            return [ev] if self.state is not State.HEAD else []
        return []

    @property
    def in_message(self) -> bool:
        return self.state is not State.SEEKING

    # -- the state machine -------------------------------------------------
    def _step(self, data: bytes, i: int, chunk: Chunk, out: list) -> int:
        st = self.state
        if st is State.SEEKING:
            return self._seek(data, i, chunk)
        if st is State.HEAD:
            return self._read_head(data, i, chunk, out)
        if st is State.BODY_LENGTH:
            n = min(self._remaining, len(data) - i)
            self._take_body(data, i, n)
            self._remaining -= n
            if self._remaining == 0:
                out.append(self._finish(chunk.end_ns))
            return i + n
        if st is State.BODY_CLOSE:
            self._take_body(data, i, len(data) - i)
            return len(data)
        if st is State.CHUNKED_BLIND:
            return self._blind(data, i, chunk, out)
        return self._chunked(data, i, chunk, out)

    def _seek(self, data: bytes, i: int, chunk: Chunk) -> int:
        m = self._start_re.search(data, i)
        # a message starts at a call boundary or right after a line end
        while m and m.start() != 0 and data[m.start() - 2:m.start()] != b"\r\n":
            m = self._start_re.search(data, m.start() + 1)
        if not m:
            self.skipped_bytes += len(data) - i
            return len(data)
        self.skipped_bytes += m.start() - i
        self.state = State.HEAD
        self._head.clear()
        self._head_start = (chunk.start_ns, chunk.end_ns, chunk.source)
        return m.start()

    def _read_head(self, data: bytes, i: int, chunk: Chunk, out: list) -> int:
        before = len(self._head)
        self._head += data[i:]
        idx = self._head.find(b"\r\n\r\n", max(0, before - 3))
        if idx < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._resync(invalid=True)
            return len(data)
        consumed = idx + 4 - before
        head = bytes(self._head[:idx])
        self._head.clear()
        parsed = self._parse_head(head)
        if parsed is None:
            self._resync(invalid=True)
            return i + consumed
        out.append(parsed)
        self._begin_body(parsed, chunk, out)
        return i + consumed

    def _parse_head(self, head: bytes) -> Optional[Head]:
        lines = head.split(b"\r\n")
        first = lines[0].decode("latin-1")
        parts = first.split(" ", 2)
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            name, sep, value = raw.partition(b":")
            if not sep or not name or name != name.strip():
                return None
            key = name.decode("latin-1").lower()
            val = value.strip().decode("latin-1")
            headers[key] = headers[key] + ", " + val if key in headers else val
        start, first_end, source = self._head_start
        if self.is_request:
            if len(parts) != 3:
                return None
            return Head(True, parts[0], parts[1], 0, headers, start, first_end, source)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            return None
        return Head(False, "", "", status, headers, start, first_end, source)

    def _begin_body(self, head: Head, chunk: Chunk, out: list) -> None:
        self._body = 0
        self._prefix.clear()
        self._keep = not head.is_request and head.status >= 400
        if not head.is_request and (100 <= head.status < 200):
            self.state = State.SEEKING          # interim: the final response follows
            self._interim = True
            out.pop()                            # interim heads are not messages
            return
        te = head.headers.get("transfer-encoding", "").lower()
        cl = head.headers.get("content-length")
        no_body = (not head.is_request and (
            head.status in (204, 304) or self._request_method() == "HEAD"))
        if no_body:
            out.append(self._finish(chunk.end_ns))
        elif "chunked" in te:
            self.state = State.CHUNK_SIZE
            self._line.clear()
        elif cl is not None:
            try:
                self._remaining = int(cl.split(",")[0])
            except ValueError:
                self._remaining = -1
            if self._remaining < 0:
                self.invalid += 1
                self._remaining = 0
            if self._remaining == 0:
                out.append(self._finish(chunk.end_ns))
            else:
                self.state = State.BODY_LENGTH
        elif head.is_request:
            out.append(self._finish(chunk.end_ns))   # requests without length have no body
        else:
            self.state = State.BODY_CLOSE

    def _chunked(self, data: bytes, i: int, chunk: Chunk, out: list) -> int:
        st = self.state
        if st is State.CHUNK_DATA:
            n = min(self._remaining, len(data) - i)
            self._take_body(data, i, n)
            self._remaining -= n
            if self._remaining == 0:
                self.state = State.CHUNK_CRLF
                self._remaining = 2
            return i + n
        if st is State.CHUNK_CRLF:
            n = min(self._remaining, len(data) - i)
            self._remaining -= n
            if self._remaining == 0:
                self.state = State.CHUNK_SIZE
            return i + n
        # CHUNK_SIZE or CHUNK_TRAILER: line oriented
        nl = data.find(b"\n", i)
        end = len(data) if nl < 0 else nl + 1
        self._line += data[i:end]
        if nl < 0:
            if len(self._line) > MAX_CHUNK_LINE:
                self._resync(invalid=True)
            return end
        line = bytes(self._line).strip()
        self._line.clear()
        if st is State.CHUNK_TRAILER:
            if not line:
                out.append(self._finish(chunk.end_ns))
            return end
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            self._resync(invalid=True)
            return end
        if size == 0:
            self.state = State.CHUNK_TRAILER
        else:
            self.state = State.CHUNK_DATA
            self._remaining = size
        return end

    def _blind(self, data: bytes, i: int, chunk: Chunk, out: list) -> int:
        self._body += len(data) - i
        if chunk.length == len(data) and data.endswith(_CHUNKED_END):
            self._body -= len(_CHUNKED_END)
            out.append(self._finish(chunk.end_ns))
        return len(data)

    def _hidden(self, hidden: int, chunk: Chunk, out: list) -> None:
        """Bytes the call moved that were not captured."""
        st = self.state
        if st is State.BODY_LENGTH:
            n = min(hidden, self._remaining)
            self._body += n
            self._remaining -= n
            if self._remaining == 0:
                out.append(self._finish(chunk.end_ns))
            if hidden > n:
                self.gaps += 1     # the next message's head was not captured
                self.skipped_bytes += hidden - n
        elif st is State.BODY_CLOSE:
            self._body += hidden
        elif st is State.CHUNK_DATA and hidden < self._remaining:
            self._body += hidden
            self._remaining -= hidden
        elif st in (State.CHUNK_DATA, State.CHUNK_CRLF, State.CHUNK_SIZE,
                    State.CHUNKED_BLIND):
            self.state = State.CHUNKED_BLIND
            self._body += hidden
            if chunk.tail.endswith(_CHUNKED_END):
                self._body -= len(_CHUNKED_END)
                out.append(self._finish(chunk.end_ns))
        elif st is not State.SEEKING:
            self.gaps += 1
            self.skipped_bytes += hidden
            if st is State.HEAD:
                self._resync(invalid=False)
            else:   # trailer lost: the message is over as far as we can tell
                out.append(self._finish(chunk.end_ns, complete=False))
        else:
            self.skipped_bytes += hidden

    # -- helpers -----------------------------------------------------------
    def _take_body(self, data: bytes, i: int, n: int) -> None:
        self._body += n
        if self._keep and len(self._prefix) < ERROR_BODY_KEEP:
            self._prefix += data[i:i + min(n, ERROR_BODY_KEEP - len(self._prefix))]

    def _finish(self, end_ns: int, complete: bool = True) -> End:
        ev = End(end_ns, self._body, bytes(self._prefix), complete)
        self.state = State.SEEKING
        self._body = 0
        self._prefix.clear()
        self._keep = False
        return ev

    def _resync(self, invalid: bool) -> None:
        if invalid:
            self.invalid += 1
        self.gaps += 1
        self._head.clear()
        self._line.clear()
        self.state = State.SEEKING
