"""Sans-I/O HTTP/1.1 parser for *observed* traffic: both directions of one connection.

`Parser.feed(egress, chunk, answering)` is fed `Chunk`s — the bytes one
read/write call moved, of which only the first `len(data)` are visible (the
kernel captures a bounded prefix; the rest is counted, not shown) — and
returns events as values, in the order they happened:

    Head(...)      a request line or status line with its headers (final messages
                   only: interim 1xx responses are consumed here)
    End(...)       the message whose Head came before is over (body bytes counted);
                   complete=False when it was cut short by a gap or a bad frame
    Lost(...)      a message whose start line was seen but whose head was not
                   (lost in a gap, malformed, or too large): no Head was returned
    Progress(...)  body bytes counted so far in a message still in progress (the
                   last event of a call that leaves a body unfinished)

Each event says its direction (`is_request`).  The one thing the parser
cannot see is which request a response answers (that is stitching):
`answering` is the method of the request awaiting its response, "" if none.
From it follow the two rules that need it: a response to HEAD has no body, and
a final response to a request sent with `Expect: 100-continue` whose body has
not started means the body will not be sent (that request ends with no End:
it sent no body; the next request starts anew).  The rules between the two
directions are the parser's: S3 clients do not pipeline, so a request head
ends the response in progress (cut short), and once a response ends the
client's next bytes may start a request.

Invariants:
  * Split-invariance: feeding the same bytes in any split into calls (each piece
    carrying its call's time stamps) returns the same Head, End and Lost events
    (Progress says where each call left a body).  Nothing depends on where a
    call boundary falls: start lines, head ends, chunk-size lines and the
    chunked terminator are all found across boundaries.
  * Traffic may start mid-message and may have gaps: the parser looks for the
    next message start (SEEKING) rather than rejecting.  A start is only looked
    for where one can be — the stream's first byte, right after a message, right
    after a gap, or right after a line feed — so body bytes are never parsed as
    heads.  Every skipped byte is counted in `skipped_bytes`, every framing loss
    in `gaps`, every malformed frame in `invalid` (`statistics()`).
  * Bounded: at most MAX_HEAD_BYTES of a head (plus one call's captured prefix),
    MAX_START_LINE of a candidate start line (heads.py); the body's bounds are
    framing.py's.  Bodies are counted, not stored.
  * No exception escapes feed()/close(); malformed input becomes counted state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from s3slower.aggregator.framing import BAD, CLOSE, DONE, MORE, Body, body_framing
from s3slower.aggregator.heads import (MAX_HEAD_BYTES, MAYBE, RESPONSE_START_LEN, YES, Head,
                                       parse_head, start_line_at)
from s3slower.common.events import Event


# A decoded DATA record (common/events.Event) has these fields under these
# names: the pipeline feeds it as it is, without building a Chunk of it.
@dataclass(slots=True)
class Chunk:
    data: bytes           # visible bytes (a prefix of what the call moved)
    length: int           # bytes the call moved
    start_ns: int         # call entry
    end_ns: int           # call return
    tail: bytes = b""     # last bytes of the call's buffer when length > len(data)
    source: int = 0       # events.Source of the call


Call = Union[Chunk, Event]      # what feed() takes: either, by the fields above

# slots, not frozen (cheaper to build on the per-message path); never mutated.
@dataclass(slots=True)
class End:
    is_request: bool
    end_ns: int           # return of the call carrying the last byte
    body_bytes: int
    body_prefix: bytes    # kept only for error responses and answers to POST (<= ERROR_BODY_KEEP)
    complete: bool = True  # False: ended by a gap or close before framing said so


@dataclass(slots=True)
class Lost:
    is_request: bool
    end_ns: int           # return of the call where the loss was noticed


@dataclass(slots=True)
class Progress:
    is_request: bool
    body_bytes: int       # of the message in progress, so far


ParseEvent = Union[Head, End, Lost, Progress]


@dataclass(frozen=True, slots=True)
class ParserStats:
    skipped_bytes: int    # bytes that belonged to no message seen
    gaps: int             # messages or parts of messages lost to framing loss
    invalid: int          # malformed heads, lengths and chunk lines


# Where a stream stands: looking for a message start, inside a head, inside a body.
SEEKING, IN_HEAD, IN_BODY = range(3)


class MessageStream:
    """One direction of one connection.

    `heads` and `ends` count the final heads and the Ends and Losts returned;
    `answered` says the last feed's first final head came before any Lost
    while a request awaited its answer.  The Parser's rules read them."""

    def __init__(self, is_request: bool):
        self.is_request = is_request
        self.state = SEEKING
        self._at_boundary = True          # the next byte may start a message
        self._carry = bytearray()         # a candidate start line awaiting its end
        self._carry_stamp = (0, 0, 0)
        self._head = bytearray()
        self._head_start = (0, 0, 0)
        self._body = Body()
        self._message: Optional[Head] = None  # the head of the message in progress
        self._last_end = 0
        self._awaiting = ""               # during feed(): the request not yet answered
        self.heads = 0
        self.ends = 0
        self.answered = False
        self.skipped_bytes = 0
        self.gaps = 0
        self.invalid = 0

    # -- input -------------------------------------------------------------
    def feed(self, chunk: Call, answering: str = "") -> list[ParseEvent]:
        """`answering`: for responses, the method of the request they answer."""
        out: list[ParseEvent] = []
        self._awaiting = answering
        self.answered = False
        data = chunk.data
        i = 0
        while i < len(data):
            st = self.state
            if st == IN_BODY:
                i, outcome = self._body.feed(data, i)
                if outcome == DONE:
                    out.append(self._finish(chunk.end_ns))
                elif outcome == BAD:                # bad framing: end it, cut short
                    self.invalid += 1
                    self.gaps += 1
                    out.append(self._finish(chunk.end_ns, complete=False))
                    self._at_boundary = False
            elif st == SEEKING:
                i = self._seek(data, i, chunk)
            else:
                i = self._read_head(data, i, chunk, answering, out)
        hidden = chunk.length - len(data)
        if hidden > 0:
            self._hidden(hidden, chunk, out)
        self._last_end = chunk.end_ns
        if self.state == IN_BODY and self._body.count:
            out.append(Progress(self.is_request, self._body.count))
        return out

    def close(self) -> list[ParseEvent]:
        """The connection closed: a close-delimited body ends here."""
        if self.state == IN_BODY:
            if self._body.framing == CLOSE:
                return [self._finish(self._last_end)]
            self.gaps += 1
            return [self._finish(self._last_end, complete=False)]
        if self.state == IN_HEAD:
            self.gaps += 1
            self._resync(invalid=False)
            self.ends += 1
            return [Lost(self.is_request, self._last_end)]
        self.skipped_bytes += len(self._carry)
        self._carry.clear()
        return []

    def reset(self) -> list[ParseEvent]:
        """The peer moved on (a new request was sent): the message this stream
        is in the middle of is over, cut short; the next byte starts anew."""
        out: list[ParseEvent] = []
        if self.state == IN_HEAD:
            self.gaps += 1
            self._resync(invalid=False)
            self.ends += 1
            out.append(Lost(self.is_request, self._last_end))
        elif self.state == IN_BODY:
            self.gaps += 1
            out.append(self._finish(self._last_end, complete=False))
        self.skipped_bytes += len(self._carry)
        self._carry.clear()
        self._at_boundary = True
        return out

    def expect_start(self) -> None:
        """The peer answered: if this stream is between messages, its next byte
        may start one (a call boundary after skipped bytes is a boundary)."""
        if self.state == SEEKING:
            self.skipped_bytes += len(self._carry)
            self._carry.clear()
            self._at_boundary = True

    def refuse_body(self) -> None:
        """A final response came instead of `100 Continue`: if the request in
        progress asked for it and none of its body has gone out, none will, and
        the next byte starts a new request.  (No End: it sent no body.)"""
        if (self.state == IN_BODY and self._body.count == 0 and self._message is not None
                and "100-continue" in self._message.headers.get("expect", "").lower()):
            self.state = SEEKING
            self._at_boundary = True

    # -- finding a message start ---------------------------------------------
    def _seek(self, data: bytes, i: int, chunk: Call) -> int:
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
            verdict = start_line_at(data, p, self.is_request)
            if verdict == YES:
                self.skipped_bytes += p - i
                self._start_head(b"", (chunk.start_ns, chunk.end_ns, chunk.source))
                return p
            if verdict == MAYBE:
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

    def _grow_carry(self, data: bytes, chunk: Call) -> int:
        """A candidate start line began in an earlier call: decide with these bytes."""
        carry = bytes(self._carry)
        if self.is_request:
            nl = data.find(b"\n")
            take = len(data) if nl < 0 else nl + 1
        else:
            take = min(len(data), RESPONSE_START_LEN)
        verdict = start_line_at(carry + data[:take], 0, self.is_request)
        if verdict == MAYBE:
            self._carry += data[:take]
            return take
        self._carry.clear()
        if verdict == YES:
            self._start_head(carry, self._carry_stamp)
            return 0
        self.skipped_bytes += len(carry)
        self._at_boundary = False
        return 0

    def _start_head(self, begun: bytes, stamp: tuple) -> None:
        self.state = IN_HEAD
        self._head.clear()
        self._head += begun
        self._head_start = stamp

    # -- heads -----------------------------------------------------------------
    def _read_head(self, data: bytes, i: int, chunk: Call, answering: str,
                   out: list) -> int:
        held = self._head
        if held:                        # begun in an earlier call: join, then look
            before = len(held)
            held += data[i:]
            idx = held.find(b"\r\n\r\n", max(0, before - 3))
        else:                           # begun here: look in place, copy only the head
            before = i
            idx = data.find(b"\r\n\r\n", i)
        if idx < 0:
            if not held:
                held += data[i:]
            if len(held) > MAX_HEAD_BYTES:
                self._lose(chunk, out)
            return len(data)
        consumed = idx + 4 - before
        parsed = parse_head(held[:idx] if held else data[i:idx], self.is_request,
                            self._head_start)
        held.clear()
        if parsed is None:
            self._lose(chunk, out)
            self._at_boundary = True
        else:
            self._begin_body(parsed, chunk, answering, out)
        return i + consumed

    def _begin_body(self, head: Head, chunk: Call, answering: str, out: list) -> None:
        if not head.is_request and (100 <= head.status < 200):
            self.state = SEEKING                # interim: the final response follows
            self._at_boundary = True
            return                              # interim heads are not messages
        out.append(head)
        self.heads += 1
        if self._awaiting:
            self.answered = True
            self._awaiting = ""
        framing, length = body_framing(head, answering)
        if framing is None:
            if length < 0:
                self.invalid += 1               # a Content-Length that is no number
            self.state = SEEKING
            self._at_boundary = True
            self.ends += 1
            out.append(End(self.is_request, chunk.end_ns, 0, b""))
            return
        self._body.start(framing, length, keep=not head.is_request and
                         (head.status >= 400 or answering == "POST"))
        self._message = head
        self.state = IN_BODY

    # -- bodies --------------------------------------------------------------
    def _hidden(self, hidden: int, chunk: Call, out: list) -> None:
        """Bytes the call moved that were not captured."""
        st = self.state
        if st == IN_BODY:
            outcome, beyond = self._body.hidden(hidden, chunk.tail)
            if outcome != MORE:
                out.append(self._finish(chunk.end_ns, complete=outcome == DONE))
            if beyond:          # bytes past the body (or its trailer): a head there is lost
                self.gaps += 1
                self.skipped_bytes += beyond
        elif st == IN_HEAD:
            self.gaps += 1
            self.skipped_bytes += hidden
            self._lose(chunk, out, invalid=False)
            self._at_boundary = True
        else:                             # SEEKING: nothing known was lost
            self.skipped_bytes += hidden + len(self._carry)
            self._carry.clear()
            self._at_boundary = True

    # -- helpers -----------------------------------------------------------
    def _finish(self, end_ns: int, complete: bool = True) -> End:
        body = self._body
        self.state = SEEKING
        self._at_boundary = True
        self.ends += 1
        return End(self.is_request, end_ns, body.count, bytes(body.prefix), complete)

    def _lose(self, chunk: Call, out: list, invalid: bool = True) -> None:
        """The head in progress cannot be read: report a lost message."""
        self._resync(invalid)
        self._awaiting = ""                     # its answer, if it was one, is lost
        self.ends += 1
        out.append(Lost(self.is_request, chunk.end_ns))

    def _resync(self, invalid: bool) -> None:
        if invalid:
            self.invalid += 1
            self.gaps += 1
        self._head.clear()
        self._carry.clear()
        self.state = SEEKING
        self._at_boundary = False


class Parser:
    """Both directions of one connection, and the rules between them."""

    def __init__(self) -> None:
        self.requests = MessageStream(True)
        self.responses = MessageStream(False)

    def feed(self, egress: bool, chunk: Call, answering: str = "") -> list[ParseEvent]:
        """One call's bytes: egress (the client sent them) or ingress.  `answering`:
        the method of the request awaiting its response, "" if none does."""
        if egress:
            q = self.requests
            heads = q.heads
            events = q.feed(chunk)
            if q.heads != heads:        # no pipelining: the response in progress is over
                ended = self.responses.reset()
                if ended:                   # as after any response's end:
                    self.requests.expect_start()
                    at = next(k for k, ev in enumerate(events) if type(ev) is Head)
                    events[at:at] = ended
            return events
        r = self.responses
        ends = r.ends
        events = r.feed(chunk, answering)
        if r.answered:
            self.requests.refuse_body()
        if r.ends != ends:
            self.requests.expect_start()        # the client's next request starts anew
        return events

    def close(self) -> list[ParseEvent]:
        """The connection closed: messages in progress end here."""
        return self.requests.close() + self.responses.close()

    def statistics(self) -> ParserStats:
        q, r = self.requests, self.responses
        return ParserStats(q.skipped_bytes + r.skipped_bytes, q.gaps + r.gaps,
                           q.invalid + r.invalid)
