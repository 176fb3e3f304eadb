"""The SNI of a ClientHello (aggregator/clienthello.py): real hellos read
right, and any bytes -- random, cut, mutated -- give a name or "", never an
exception."""
from __future__ import annotations

import ssl

from hypothesis import given, settings
from hypothesis import strategies as st

from s3slower.aggregator.clienthello import server_name

SETTINGS = settings(max_examples=600, deadline=None)


def hello(name: str | None) -> bytes:
    """OpenSSL's first flight, through memory BIOs (no socket)."""
    ctx = ssl.create_default_context()
    if name is None:
        ctx.check_hostname = False
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


REAL = hello("s3.eu-west-1.example.com")


def test_real_hellos():
    assert REAL[:2] == b"\x16\x03"
    assert server_name(REAL) == "s3.eu-west-1.example.com"
    assert server_name(hello("localhost")) == "localhost"
    assert server_name(hello(None)) == ""          # no server_name extension


def test_not_a_hello_or_cut_before_the_name():
    assert server_name(b"") == ""
    assert server_name(b"GET / HTTP/1.1\r\n\r\n") == ""
    assert server_name(b"\x17\x03\x03" + REAL[3:]) == ""      # application data
    assert server_name(REAL[:5] + b"\x02" + REAL[6:]) == ""   # a ServerHello's type
    cut = REAL.index(b"s3.eu-west-1")
    assert server_name(REAL[:cut + 4]) == ""                  # the name itself cut short


def test_a_name_that_is_not_text_is_none():
    at = REAL.index(b"s3.eu-west-1")
    assert server_name(REAL[:at] + b"s3 eu\x00" + REAL[at + 6:]) == ""


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data):
    assert isinstance(server_name(data), str)
    assert isinstance(server_name(b"\x16\x03" + data), str)
    assert isinstance(server_name(b"\x16\x03\x01\x02\x00\x01" + data), str)


@SETTINGS
@given(st.integers(0, len(REAL)), st.lists(st.tuples(st.integers(0, len(REAL) - 1),
                                                    st.integers(0, 255)), max_size=8))
def test_cut_and_mutated_hellos_never_raise(cut, flips):
    b = bytearray(REAL)
    for at, v in flips:
        b[at] = v
    name = server_name(bytes(b[:cut]))
    assert isinstance(name, str) and len(name) <= 253
