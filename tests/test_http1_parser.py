"""The HTTP/1.1 parser on its own (aggregator/http1.py, heads.py, framing.py):
bytes in, events out, no Connection.  Every exchange is also fed one byte per
call, and must give the same Head, End and Lost events (h11's byte-at-a-time
tests)."""
from __future__ import annotations

import pytest

from s3slower.aggregator.http1 import Chunk, End, Head, Lost, Parser, ParserStats, Progress

REQ, RESP = True, False

GET = b"GET /bkt/key HTTP/1.1\r\nHost: s3.example.com\r\nUser-Agent: test\r\n\r\n"
HEAD_REQ = b"HEAD /bkt/key HTTP/1.1\r\nHost: s3.example.com\r\n\r\n"
PUT_HEAD = (b"PUT /bkt/key HTTP/1.1\r\nHost: s3.example.com\r\nContent-Length: 10\r\n"
            b"Expect: 100-continue\r\n\r\n")
OK_10 = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
AWS_CHUNKED = (b"PUT /bkt/key HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Encoding: aws-chunked\r\nx-amz-decoded-content-length: 10\r\n"
               b"x-amz-trailer: x-amz-checksum-crc32\r\n\r\n"
               b"a;chunk-signature=" + b"1" * 64 + b"\r\n0123456789\r\n"
               b"0;chunk-signature=" + b"2" * 64 + b"\r\n"
               b"x-amz-checksum-crc32:sOO8/Q==\r\nx-amz-trailer-signature:" + b"3" * 64 +
               b"\r\n\r\n")


def call(p: Parser, egress: bool, data: bytes, answering: str = "", t: int = 0,
         length: int | None = None, tail: bytes = b"") -> list:
    """One call: its visible bytes, the bytes it moved, stamps t and t + 1."""
    n = len(data) if length is None else length
    return p.feed(egress, Chunk(data, n, t, t + 1, tail), answering)


def by_byte(p: Parser, egress: bool, data: bytes, answering: str = "", t: int = 0) -> list:
    """The same bytes, one per call, all carrying the same stamps."""
    return [ev for i in range(len(data))
            for ev in p.feed(egress, Chunk(data[i:i + 1], 1, t, t + 1), answering)]


def messages(events: list) -> list:
    return [ev for ev in events if not isinstance(ev, Progress)]


@pytest.fixture(params=["whole", "by byte"])
def feed(request):
    return call if request.param == "whole" else by_byte


# -- heads -------------------------------------------------------------------

def test_request_head(feed):
    p = Parser()
    head, end = feed(p, REQ, GET, t=100)
    assert isinstance(head, Head) and head.is_request
    assert (head.method, head.target, head.start_ns, head.first_byte_end_ns) == \
        ("GET", "/bkt/key", 100, 101)
    assert head.headers == {"host": "s3.example.com", "user-agent": "test"}
    assert end == End(REQ, 101, 0, b"")       # a request without a length has no body


def test_repeated_headers_are_joined_and_names_lower_cased():
    p = Parser()
    head, _ = call(p, REQ, b"GET / HTTP/1.1\r\nX-A: 1\r\nx-a:  2 \r\n\r\n")
    assert head.headers == {"x-a": "1, 2"}


def test_response_head_and_content_length(feed):
    p = Parser()
    events = messages(feed(p, RESP, OK_10, "GET", t=5))
    head, end = events
    assert (head.is_request, head.status, head.headers) == (False, 200, {"content-length": "10"})
    assert end == End(RESP, 6, 10, b"")


def test_a_malformed_head_is_lost_and_counted():
    p = Parser()
    assert call(p, RESP, b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "GET") == [Lost(RESP, 1)]
    assert p.statistics() == ParserStats(skipped_bytes=0, gaps=1, invalid=1)
    assert [type(e) for e in call(p, RESP, OK_10, "GET")] == [Head, End]


def test_a_head_over_the_limit_is_lost():
    p = Parser()
    events = call(p, REQ, b"GET / HTTP/1.1\r\nX: " + b"a" * 40_000)
    assert events == [Lost(REQ, 1)]


def test_a_bad_content_length_is_invalid_and_means_no_body():
    p = Parser()
    events = call(p, RESP, b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "GET")
    assert [type(e) for e in events] == [Head, End] and events[1].body_bytes == 0
    assert p.statistics().invalid == 1


# -- bodies ------------------------------------------------------------------

def test_chunked_response(feed):
    p = Parser()
    head, end = messages(feed(p, RESP, CHUNKED, "GET"))
    assert head.headers["transfer-encoding"] == "chunked"
    assert end.body_bytes == 11 and end.complete


def test_aws_chunked_upload_with_trailers(feed):
    p = Parser()
    head, end = messages(feed(p, REQ, AWS_CHUNKED))
    assert head.headers["x-amz-decoded-content-length"] == "10"
    assert (end.body_bytes, end.complete) == (10, True)     # chunk data; trailers read
    assert [type(e) for e in call(p, REQ, GET)] == [Head, End]
    assert p.statistics() == ParserStats(0, 0, 0)


def test_a_bad_chunk_size_line_ends_the_body_cut_short():
    p = Parser()
    events = call(p, RESP, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "GET")
    assert events[-1] == End(RESP, 1, 0, b"", complete=False)
    assert p.statistics().invalid == 1 and p.statistics().gaps == 1


def test_close_delimited_response_ends_at_close():
    p = Parser()
    events = call(p, RESP, b"HTTP/1.1 200 OK\r\n\r\nsome bytes", "GET", t=10)
    assert [type(e) for e in events] == [Head, Progress] and events[1].body_bytes == 10
    assert p.close() == [End(RESP, 11, 10, b"")]


def test_error_body_prefix_is_kept_for_error_responses_only():
    p = Parser()
    body = b"<Error><Code>NoSuchKey</Code></Error>"
    events = call(p, RESP, b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body), "GET")
    assert events[-1].body_prefix == body
    assert call(p, RESP, OK_10, "GET")[-1].body_prefix == b""


def test_progress_reports_a_body_still_in_progress():
    p = Parser()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    assert [type(e) for e in call(p, RESP, head, "GET")] == [Head]   # no body byte yet
    assert call(p, RESP, b"x" * 30, t=2) == [Progress(RESP, 30)]
    assert call(p, RESP, b"y" * 30, t=4, length=70) == [End(RESP, 5, 100, b"")]


# -- what the response answers -------------------------------------------------

def test_a_response_to_head_has_no_body(feed):
    p = Parser()
    call(p, REQ, HEAD_REQ)
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n"
    head, end = feed(p, RESP, resp, "HEAD")
    assert head.headers["content-length"] == "5000000" and end.body_bytes == 0
    assert [type(e) for e in call(p, RESP, OK_10, "GET")] == [Head, End]  # the next one


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(feed, status):
    p = Parser()
    resp = b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status
    head, end = feed(p, RESP, resp, "GET")
    assert head.status == status and end.body_bytes == 0


def test_100_continue_then_body_then_final_response(feed):
    p = Parser()
    assert [type(e) for e in call(p, REQ, PUT_HEAD)] == [Head]
    assert feed(p, RESP, b"HTTP/1.1 100 Continue\r\n\r\n", "PUT") == []   # interim: consumed
    assert messages(call(p, REQ, b"0123456789", t=3)) == [End(REQ, 4, 10, b"")]
    head, end = messages(feed(p, RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "PUT"))
    assert head.status == 200 and end.body_bytes == 0


def test_a_final_response_instead_of_100_continue_means_no_body(feed):
    p = Parser()
    call(p, REQ, PUT_HEAD)
    head, end = messages(feed(p, RESP, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
                              "PUT"))
    assert head.status == 403
    # the refused body never comes: the client's next bytes are a new request
    events = call(p, REQ, GET)
    assert [type(e) for e in events] == [Head, End] and events[0].method == "GET"


def test_without_a_waiting_request_a_final_response_refuses_nothing():
    p = Parser()
    call(p, REQ, PUT_HEAD)
    call(p, RESP, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "")
    assert messages(call(p, REQ, b"0123456789")) == [End(REQ, 1, 10, b"")]


def test_a_new_request_ends_the_response_in_progress():
    p = Parser()
    call(p, REQ, GET)
    call(p, RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", "GET")
    events = call(p, REQ, GET, t=9)
    assert [(type(e), e.is_request) for e in events] == [(End, RESP), (Head, REQ), (End, REQ)]
    assert events[0] == End(RESP, 1, 3, b"", complete=False)
    assert p.statistics().gaps == 1


# -- partial and mid-message starts -----------------------------------------------

def test_a_capture_that_starts_mid_body_finds_the_next_message(feed):
    p = Parser()
    events = messages(feed(p, RESP, b"tail of a body\r\nHTTP/1.1 oops\r\n" + OK_10, "GET"))
    assert [type(e) for e in events] == [Head, End] and events[1].body_bytes == 10
    assert p.statistics().skipped_bytes == len(b"tail of a body\r\nHTTP/1.1 oops\r\n")


def test_a_start_line_is_only_looked_for_after_a_line_feed():
    p = Parser()
    assert call(p, REQ, b"xxGET / HTTP/1.1\r\n\r\n") == []
    assert call(p, REQ, b"\nGET / HTTP/1.1\r\n\r\n")[0].method == "GET"


def test_a_start_line_split_across_calls_keeps_its_first_call_stamps():
    p = Parser()
    assert call(p, REQ, b"GE", t=10) == []
    head, _ = call(p, REQ, b"T / HTTP/1.1\r\n\r\n", t=20)
    assert (head.start_ns, head.first_byte_end_ns) == (10, 11)


def test_bytes_beyond_the_capture_are_counted_in_the_body():
    p = Parser()
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"
    events = call(p, RESP, resp + b"x" * 100, "GET", length=len(resp) + 1_000_000)
    assert events[-1] == End(RESP, 1, 1_000_000, b"")


def test_a_chunked_body_beyond_the_capture_ends_at_its_terminator():
    p = Parser()
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4000\r\nxx"
    events = call(p, RESP, resp, "GET", length=len(resp) + 20_000, tail=b"data\r\n0\r\n\r\n")
    assert isinstance(events[-1], End) and events[-1].complete


def test_a_head_cut_by_uncaptured_bytes_is_lost():
    p = Parser()
    assert call(p, RESP, b"HTTP/1.1 200 OK\r\nContent-", "GET", length=5000) == [Lost(RESP, 1)]
    assert p.statistics().gaps == 1


def test_close_in_the_middle_of_a_head_loses_it():
    p = Parser()
    call(p, REQ, b"PUT /b/k HTTP/1.1\r\nHost: h\r\n")
    assert p.close() == [Lost(REQ, 1)]
