"""Sans-I/O HTTP/1.1 parser for *observed* traffic, one direction of one connection.

It is fed `Chunk`s — the bytes one read/write call moved, of which only the
first `len(data)` are visible (the kernel captures a bounded prefix; the rest
is counted, not shown) — and returns events as values:

    Head(...)  a request line or status line with its headers (final messages only:
               interim 1xx responses are consumed here)
    End(...)   the message whose Head came before is over (body bytes counted);
               complete=False when it was cut short by a gap or a bad frame
    Lost(...)  a message whose start line was seen but whose head was not
               (lost in a gap, malformed, or too large): no Head was returned

Invariants:
  * Split-invariance: feeding the same bytes in any split into calls (each piece
    carrying its call's time stamps) returns the same events.  Nothing depends
    on where a call boundary falls: start lines, head ends, chunk-size lines and
    the chunked terminator are all found across boundaries.
  * Traffic may start mid-message and may have gaps: the parser looks for the
    next message start (SEEKING) rather than rejecting.  A start is only looked
    for where one can be — the stream's first byte, right after a message, right
    after a gap, or right after a line feed — so body bytes are never parsed as
    heads.  Every skipped byte is counted in `skipped_bytes`, every framing loss
    in `gaps`, every malformed frame in `invalid`.
  * Bounded: at most MAX_HEAD_BYTES of a head (plus one call's captured prefix),
    MAX_START_LINE of a candidate start line, MAX_CHUNK_LINE of a chunk-size
    line, ERROR_BODY_KEEP bytes of an error body; bodies are counted, not stored.
  * No exception escapes feed()/close(); malformed input becomes counted state.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Callable, Optional, Union

# A head larger than this is not S3 (AWS caps request headers at 8 KiB; h11's
# default limit is 16 KiB): treat it as garbage and resynchronise.
MAX_HEAD_BYTES = 32 * 1024
# A request line: method, target, version.  S3 keys are up to 1 KiB (3 KiB
# percent-encoded) and a presigned query adds ~1.5 KiB; 16 KiB leaves room
# and bounds what a candidate start line may hold while it waits for its end.
MAX_START_LINE = 16 * 1024
# Enough of an error body to find the S3 XML <Code> element.
ERROR_BODY_KEEP = 2048
# A chunk-size line with extensions (aws-chunked signatures are ~90 bytes).
MAX_CHUNK_LINE = 1024

_REQUEST_START = re.compile(
    rb"(?:GET|PUT|POST|HEAD|DELETE|OPTIONS|PATCH) [!-~]+ HTTP/1\.[01]\r\n")
_METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ")
_RESPONSE_START = re.compile(rb"HTTP/1\.[01] [1-5][0-9][0-9][ \r]")
_RESPONSE_START_LEN = 13
_RESPONSE_PREFIX = re.compile(rb"H(?:T(?:T(?:P(?:/(?:1(?:\.(?:[01](?: (?:[1-5][0-9]{0,2})?)?)?)?)?)?)?)?)?\Z")
_DIGITS = re.compile(r"[0-9]{1,19}\Z")
# End of a chunked body seen without its framing (blind): last CRLF of the
# last data chunk, the zero-size chunk, the empty trailer line.
_BLIND_END = b"\r\n0\r\n\r\n"


@dataclass(slots=True)
class Chunk:
    data: bytes           # visible bytes (a prefix of what the call moved)
    length: int           # bytes the call moved
    start_ns: int         # call entry
    end_ns: int           # call return
    tail: bytes = b""     # last bytes of the call's buffer when length > len(data)
    source: int = 0       # events.Source of the call


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


@dataclass(slots=True)
class End:
    end_ns: int           # return of the call carrying the last byte
    body_bytes: int
    body_prefix: bytes    # kept only for error responses (<= ERROR_BODY_KEEP)
    complete: bool = True  # False: ended by a gap or close before framing said so


@dataclass(slots=True)
class Lost:
    end_ns: int           # return of the call where the loss was noticed


ParseEvent = Union[Head, End, Lost]


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


_BODY_STATES = frozenset({State.BODY_LENGTH, State.CHUNK_SIZE, State.CHUNK_DATA,
                          State.CHUNK_CRLF, State.CHUNK_TRAILER, State.CHUNKED_BLIND,
                          State.BODY_CLOSE})


class MessageStream:
    """One direction of one connection.

    For responses, `request_method` returns the method of the request the
    next response answers (HEAD responses have no body).
    """

    def __init__(self, is_request: bool,
                 request_method: Optional[Callable[[], str]] = None):
        self.is_request = is_request
        self._request_method = request_method or (lambda: "")
        self.state = State.SEEKING
        self._at_boundary = True          # the next byte may start a message
        self._carry = bytearray()         # a candidate start line awaiting its end
        self._carry_stamp = (0, 0, 0)
        self._head = bytearray()
        self._head_start = (0, 0, 0)
        self._remaining = 0
        self._line = bytearray()
        self._window = b""                # last bytes seen in CHUNKED_BLIND
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
        if self.state is State.HEAD:
            self.gaps += 1
            self._resync(invalid=False)
            return [Lost(self._last_end)]
        if self.state is not State.SEEKING:
            self.gaps += 1
            return [self._finish(self._last_end, complete=False)]
        self.skipped_bytes += len(self._carry)
        self._carry.clear()
        return []

    def reset(self) -> list[ParseEvent]:
        """The peer moved on (a new request was sent): the message this stream
        is in the middle of is over, cut short; the next byte starts anew."""
        out: list[ParseEvent] = []
        if self.state is State.HEAD:
            self.gaps += 1
            self._resync(invalid=False)
            out.append(Lost(self._last_end))
        elif self.state is not State.SEEKING:
            self.gaps += 1
            out.append(self._finish(self._last_end, complete=False))
        self.skipped_bytes += len(self._carry)
        self._carry.clear()
        self._at_boundary = True
        return out

    def expect_start(self) -> None:
        """The peer answered: if this stream is between messages, its next byte
        may start one (a call boundary after skipped bytes is a boundary)."""
        if self.state is State.SEEKING:
            self.skipped_bytes += len(self._carry)
            self._carry.clear()
            self._at_boundary = True

    def skip_body(self) -> None:
        """The body announced by the last Head will not be sent (a final response
        came instead of `100 Continue`): the next byte starts a new message."""
        if self.state in _BODY_STATES and self._body == 0:
            self._finish(self._last_end)
            self._at_boundary = True

    @property
    def in_message(self) -> bool:
        return self.state is not State.SEEKING

    @property
    def body_bytes(self) -> int:
        """Body bytes counted so far in the message in progress."""
        return self._body

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

    # -- finding a message start ---------------------------------------------
    def _check(self, buf: bytes, p: int) -> int:
        """1: a start line begins at p; 0: it may, more bytes needed; -1: it does not."""
        if self.is_request:
            e = buf.find(b"\n", p)
            if e < 0:
                n = min(len(buf) - p, 8)
                head = buf[p:p + n]
                ok = any(m[:n] == head if n <= len(m) else head.startswith(m)
                         for m in _METHODS)
                return 0 if ok and len(buf) - p <= MAX_START_LINE else -1
            return 1 if _REQUEST_START.fullmatch(buf, p, e + 1) else -1
        if len(buf) - p >= _RESPONSE_START_LEN:
            return 1 if _RESPONSE_START.match(buf, p) else -1
        return 0 if _RESPONSE_PREFIX.match(buf, p) else -1

    def _seek(self, data: bytes, i: int, chunk: Chunk) -> int:
        if self._carry:
            return self._grow_carry(data, chunk)
        p = i
        if not self._at_boundary:
            nl = data.find(b"\n", i)
            if nl < 0:
                self.skipped_bytes += len(data) - i
                return len(data)
            p = nl + 1
        while p < len(data):
            verdict = self._check(data, p)
            if verdict == 1:
                self.skipped_bytes += p - i
                self._start_head(b"", (chunk.start_ns, chunk.end_ns, chunk.source))
                return p
            if verdict == 0:
                self.skipped_bytes += p - i
                self._carry += data[p:]
                self._carry_stamp = (chunk.start_ns, chunk.end_ns, chunk.source)
                return len(data)
            nl = data.find(b"\n", p)
            if nl < 0:
                break
            p = nl + 1
        self.skipped_bytes += len(data) - i
        self._at_boundary = p == len(data)
        return len(data)

    def _grow_carry(self, data: bytes, chunk: Chunk) -> int:
        """A candidate start line began in an earlier call: decide with these bytes."""
        carry = bytes(self._carry)
        if self.is_request:
            nl = data.find(b"\n")
            take = len(data) if nl < 0 else nl + 1
        else:
            take = min(len(data), _RESPONSE_START_LEN)
        verdict = self._check(carry + data[:take], 0)
        if verdict == 0:
            self._carry += data[:take]
            return take
        self._carry.clear()
        if verdict == 1:
            self._start_head(carry, self._carry_stamp)
            return 0
        self.skipped_bytes += len(carry)
        self._at_boundary = False
        return 0

    def _start_head(self, begun: bytes, stamp: tuple) -> None:
        self.state = State.HEAD
        self._head.clear()
        self._head += begun
        self._head_start = stamp

    # -- heads -----------------------------------------------------------------
    def _read_head(self, data: bytes, i: int, chunk: Chunk, out: list) -> int:
        before = len(self._head)
        self._head += data[i:]
        idx = self._head.find(b"\r\n\r\n", max(0, before - 3))
        if idx < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._lose(chunk, out)
            return len(data)
        consumed = idx + 4 - before
        head = bytes(self._head[:idx])
        self._head.clear()
        parsed = self._parse_head(head)
        if parsed is None:
            self._lose(chunk, out)
            self._at_boundary = True
            return i + consumed
        self._begin_body(parsed, chunk, out)
        return i + consumed

    def _parse_head(self, head: bytes) -> Optional[Head]:
        lines = head.decode("latin-1").split("\r\n")    # decoded once: the hot path
        parts = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            name, sep, value = raw.partition(":")
            if not sep or not name or name != name.strip():
                return None
            key = name.lower()
            val = value.strip()
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
            self._at_boundary = True
            return                              # interim heads are not messages
        out.append(head)
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
            first = cl.split(",")[0].strip()
            if _DIGITS.match(first):
                self._remaining = int(first)
            else:
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

    # -- chunked bodies ----------------------------------------------------------
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
                self._abandon(chunk, out)
            return end
        line = bytes(self._line).strip()
        self._line.clear()
        if st is State.CHUNK_TRAILER:
            if not line:
                out.append(self._finish(chunk.end_ns))
            return end
        size_field = line.split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16) if size_field.isalnum() else -1
        except ValueError:
            size = -1
        if size < 0:
            self._abandon(chunk, out)
            return end
        if size == 0:
            self.state = State.CHUNK_TRAILER
        else:
            self.state = State.CHUNK_DATA
            self._remaining = size
        return end

    def _blind(self, data: bytes, i: int, chunk: Chunk, out: list) -> int:
        seen = self._window + data[i:]
        at = seen.find(_BLIND_END)
        if at < 0:
            self._body += len(data) - i
            self._window = seen[-(len(_BLIND_END) - 1):]
            return len(data)
        stop = at + len(_BLIND_END) - len(self._window)     # index past the end, in data[i:]
        self._body += max(0, at - len(self._window))
        self._window = b""
        out.append(self._finish(chunk.end_ns))
        return i + stop

    def _go_blind(self, hidden: int, chunk: Chunk, out: list) -> None:
        self.state = State.CHUNKED_BLIND
        self._body += hidden
        self._window = chunk.tail[-(len(_BLIND_END) - 1):] if chunk.tail else b""
        if chunk.tail.endswith(_BLIND_END):
            self._body = max(0, self._body - len(_BLIND_END))
            self._window = b""
            out.append(self._finish(chunk.end_ns))

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
                self.gaps += 1     # bytes past the body: the next message's head is lost
                self.skipped_bytes += hidden - n
                self._at_boundary = True
        elif st is State.BODY_CLOSE:
            self._body += hidden
        elif st is State.CHUNK_DATA and hidden < self._remaining:
            self._body += hidden
            self._remaining -= hidden
        elif st in (State.CHUNK_DATA, State.CHUNK_CRLF, State.CHUNK_SIZE,
                    State.CHUNKED_BLIND):
            self._line.clear()
            self._go_blind(hidden, chunk, out)
        elif st is State.HEAD:
            self.gaps += 1
            self.skipped_bytes += hidden
            self._lose(chunk, out, invalid=False)
            self._at_boundary = True
        elif st is State.CHUNK_TRAILER:   # trailer lost: over as far as we can tell
            self.gaps += 1
            self.skipped_bytes += hidden
            out.append(self._finish(chunk.end_ns, complete=False))
            self._at_boundary = True
        else:                             # SEEKING: nothing known was lost
            self.skipped_bytes += hidden + len(self._carry)
            self._carry.clear()
            self._at_boundary = True

    # -- helpers -----------------------------------------------------------
    def _take_body(self, data: bytes, i: int, n: int) -> None:
        self._body += n
        if self._keep and len(self._prefix) < ERROR_BODY_KEEP:
            self._prefix += data[i:i + min(n, ERROR_BODY_KEEP - len(self._prefix))]

    def _finish(self, end_ns: int, complete: bool = True) -> End:
        ev = End(end_ns, self._body, bytes(self._prefix), complete)
        self.state = State.SEEKING
        self._at_boundary = True
        self._body = 0
        self._prefix.clear()
        self._keep = False
        self._window = b""
        return ev

    def _lose(self, chunk: Chunk, out: list, invalid: bool = True) -> None:
        """The head in progress cannot be read: report a lost message."""
        self._resync(invalid)
        out.append(Lost(chunk.end_ns))

    def _abandon(self, chunk: Chunk, out: list) -> None:
        """The body in progress has bad framing: end it, cut short."""
        self.invalid += 1
        self.gaps += 1
        self._line.clear()
        out.append(self._finish(chunk.end_ns, complete=False))
        self._at_boundary = False

    def _resync(self, invalid: bool) -> None:
        if invalid:
            self.invalid += 1
            self.gaps += 1
        self._head.clear()
        self._line.clear()
        self._carry.clear()
        self.state = State.SEEKING
        self._at_boundary = False
