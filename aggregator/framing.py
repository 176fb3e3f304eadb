"""Body framing of one HTTP/1.1 message: Content-Length, chunked, close-delimited.

`body_framing` reads from a head how its body is delimited; a `Body` then
follows that body through the calls that carry it and says where it ends.
aws-chunked uploads need nothing of their own: sent with `Transfer-Encoding:
chunked` they are chunked bodies whose chunk-size lines carry a
`;chunk-signature=` extension and whose trailer carries the checksum; sent
with a Content-Length they are counted by it.  (Their decoded object size is
the head's `x-amz-decoded-content-length`: correlate reads it.)

Invariants:
  * Split-invariance: chunk-size lines, trailers and the chunked terminator
    are found across call boundaries.
  * Bounded: MAX_CHUNK_LINE of a chunk-size or trailer line, ERROR_BODY_KEEP
    bytes of an error body or an answer to a POST, fewer than len(BLIND_END) bytes of look-behind;
    bodies are counted, not stored.
  * Bytes the kernel did not capture are counted where the framing can place
    them; where it cannot (inside chunk framing) the body is followed blind,
    watching for the terminator.
"""
from __future__ import annotations

from typing import Optional

from s3slower.aggregator.heads import Head

# Enough of an error body to find the S3 XML <Code> element (and of a POST's
# answer: CreateMultipartUpload's <UploadId>).
ERROR_BODY_KEEP = 2048
# A chunk-size line with extensions (aws-chunked signatures are ~90 bytes).
MAX_CHUNK_LINE = 1024
# End of a chunked body seen without its framing (blind): last CRLF of the
# last data chunk, the zero-size chunk, the empty trailer line.
BLIND_END = b"\r\n0\r\n\r\n"


# Where a body stands (plain ints: enum members cost a lookup each on the hot path):
# Content-Length; until the connection closes; chunked: a chunk-size line, chunk
# data, the CRLF after it, trailer lines; chunk framing lost: watching for the
# terminator.
LENGTH, CLOSE, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, CHUNK_TRAILER, CHUNKED_BLIND = range(7)


# How a body stands after a call's bytes: it goes on; it ended where its
# framing says; its framing is bad (cut short); its trailer was not captured
# (over as far as can be told, cut short).
MORE, DONE, BAD, CUT = 0, 1, 2, 3


def body_framing(head: Head, answering: str) -> tuple[Optional[int], int]:
    """How the body after `head` is delimited and its Content-Length: (None, 0)
    when there is no body, (None, -1) when its Content-Length is not a number.
    `answering`: for a response, the method of the request it answers."""
    if not head.is_request and (head.status in (204, 304) or answering == "HEAD"):
        return None, 0
    te = head.headers.get("transfer-encoding")
    if te is not None and "chunked" in te.lower():
        return CHUNK_SIZE, 0
    cl = head.headers.get("content-length")
    if cl is not None:
        first = cl.split(",")[0].strip()
        if not (first.isdigit() and first.isascii() and len(first) <= 19):
            return None, -1
        length = int(first)
        return (LENGTH if length else None), length
    if head.is_request:
        return None, 0                # requests without a length have no body
    return CLOSE, 0


class Body:
    """The body in progress on one direction of a connection (one object,
    begun anew by `start` for each message)."""
    __slots__ = ("framing", "count", "prefix", "_keep", "_remaining", "_line", "_window")

    def __init__(self) -> None:
        self.framing = CLOSE
        self.count = 0                  # body bytes so far, captured or not
        self.prefix = bytearray()       # the first bytes of an error body
        self._keep = False
        self._remaining = 0             # of the Content-Length, chunk, or chunk's CRLF
        self._line = bytearray()        # a chunk-size or trailer line awaiting its end
        self._window = b""              # last bytes seen blind

    def start(self, framing: int, length: int, keep: bool) -> None:
        """A body begins; `keep`: hold its first ERROR_BODY_KEEP bytes in `prefix`."""
        self.framing = framing
        self.count = 0
        self.prefix.clear()
        self._keep = keep
        self._remaining = length
        self._line.clear()
        self._window = b""

    def feed(self, data: bytes, i: int) -> tuple[int, int]:
        """Follow the body through data[i:]: (index past the bytes it took, MORE/DONE/BAD)."""
        end = len(data)
        while i < end:
            f = self.framing
            if f == LENGTH or f == CHUNK_DATA:
                n = min(self._remaining, end - i)
                self._take(data, i, n)
                self._remaining -= n
                i += n
                if self._remaining == 0:
                    if f == LENGTH:
                        return i, DONE
                    self.framing = CHUNK_CRLF
                    self._remaining = 2
            elif f == CLOSE:
                self._take(data, i, end - i)
                return end, MORE
            elif f == CHUNK_CRLF:
                n = min(self._remaining, end - i)
                self._remaining -= n
                i += n
                if self._remaining == 0:
                    self.framing = CHUNK_SIZE
            elif f == CHUNKED_BLIND:
                return self._blind(data, i)
            else:
                i, outcome = self._chunk_line(data, i)
                if outcome != MORE:
                    return i, outcome
        return i, MORE

    def hidden(self, n: int, tail: bytes) -> tuple[int, int]:
        """n bytes the call moved were not captured (`tail`: its last bytes):
        (MORE/DONE/CUT, how many of them lie beyond the body)."""
        f = self.framing
        if f == LENGTH:
            k = min(n, self._remaining)
            self.count += k
            self._remaining -= k
            return (DONE if self._remaining == 0 else MORE), n - k
        if f == CLOSE:
            self.count += n
            return MORE, 0
        if f == CHUNK_DATA and n < self._remaining:
            self.count += n
            self._remaining -= n
            return MORE, 0
        if f == CHUNK_TRAILER:
            return CUT, n
        # inside chunk framing: where the next chunk-size line falls is unknown
        self._line.clear()
        self.framing = CHUNKED_BLIND
        self.count += n
        self._window = tail[-(len(BLIND_END) - 1):] if tail else b""
        if tail.endswith(BLIND_END):
            self.count = max(0, self.count - len(BLIND_END))
            self._window = b""
            return DONE, 0
        return MORE, 0

    def _take(self, data: bytes, i: int, n: int) -> None:
        self.count += n
        if self._keep and len(self.prefix) < ERROR_BODY_KEEP:
            self.prefix += data[i:i + min(n, ERROR_BODY_KEEP - len(self.prefix))]

    def _chunk_line(self, data: bytes, i: int) -> tuple[int, int]:
        """A chunk-size line or a trailer line (CHUNK_SIZE, CHUNK_TRAILER)."""
        nl = data.find(b"\n", i)
        end = len(data) if nl < 0 else nl + 1
        self._line += data[i:end]
        if nl < 0:
            if len(self._line) > MAX_CHUNK_LINE:
                self._line.clear()
                return end, BAD
            return end, MORE
        line = bytes(self._line).strip()
        self._line.clear()
        if self.framing == CHUNK_TRAILER:
            return end, (MORE if line else DONE)
        size_field = line.split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16) if size_field.isalnum() else -1
        except ValueError:
            size = -1
        if size < 0:
            return end, BAD
        if size == 0:
            self.framing = CHUNK_TRAILER
        else:
            self.framing = CHUNK_DATA
            self._remaining = size
        return end, MORE

    def _blind(self, data: bytes, i: int) -> tuple[int, int]:
        seen = self._window + data[i:]
        at = seen.find(BLIND_END)
        if at < 0:
            self.count += len(data) - i
            self._window = seen[-(len(BLIND_END) - 1):]
            return len(data), MORE
        stop = at + len(BLIND_END) - len(self._window)     # index past the end, in data[i:]
        self.count += max(0, at - len(self._window))
        self._window = b""
        return i + stop, DONE
