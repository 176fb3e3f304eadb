"""The Python mirror of bpf/s3slower.h matches the C layout (habit 10)."""
import ctypes
import re
import subprocess
import textwrap

import pytest

from s3slower import bpf
from s3slower.common import events


def _c_values(tmp_path, struct: str, fields, extra: str) -> dict[str, int]:
    """offsetof each field of `struct`, and what `extra` (printf lines) prints."""
    body = "\n".join(f'printf("{f} %zu\\n", offsetof(struct {struct}, {f}));' for f in fields)
    src = tmp_path / f"{struct}.c"
    src.write_text(textwrap.dedent(f"""
        #include <stdio.h>
        #include <stddef.h>
        #include <linux/types.h>
        #include "s3slower.h"
        int main(void) {{
            {body}
            {extra}
            return 0;
        }}"""))
    exe = tmp_path / struct
    subprocess.run(["cc", f"-I{bpf.DIR}", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def _c_offsets(tmp_path) -> dict[str, int]:
    return _c_values(tmp_path, "s3s_event", list(events.FIELD_OFFSETS),
                     'printf("SIZE %zu\\n", sizeof(struct s3s_event)); '
                     'printf("MAX_CAPTURE %d\\n", S3S_MAX_CAPTURE); '
                     'printf("COMM %d\\nTAIL %d\\n", S3S_COMM_LEN, S3S_TAIL_LEN);')


def test_header_layout_matches_c(tmp_path):
    c = _c_offsets(tmp_path)
    assert c.pop("SIZE") == events.HEADER_SIZE == 80
    assert c.pop("MAX_CAPTURE") == events.MAX_CAPTURE
    assert c.pop("COMM") == events.COMM_LEN
    assert c.pop("TAIL") == events.TAIL_LEN
    assert c == events.FIELD_OFFSETS


def test_enums_match_c():
    text = bpf.HEADER.read_text()
    for kind in events.Kind:
        assert re.search(rf"S3S_EV_{kind.name}\s*=\s*{int(kind)}\b", text)
    for src in events.Source:
        assert re.search(rf"S3S_SRC_{src.name}\s*=\s*{int(src)}\b", text)
    prog = bpf.PROGRAM.read_text()
    for slot, name in events.KERNEL_LOSS_SLOTS.items():
        assert re.search(rf"#define LOST_\w+ {slot}\b", prog), name


def test_event_round_trip():
    ev = events.Event(1, 2, 3, 4, 5, 6, 5000, events.Kind.DATA, 1, 1, "curl",
                      b"GET / HTTP/1.1\r\n", b"tail-bytes")
    assert events.decode_event(events.encode_event(ev)) == ev


@pytest.mark.parametrize("raw", [b"", b"x" * 79, events.HEADER.pack(
    0, 0, 0, 0, 0, 0, 10, 50, 1, 0, 0, 0, b"", b"") + b"short"])
def test_malformed_records_are_our_error(raw):
    with pytest.raises(events.MalformedEvent):
        events.decode_event(raw)


def test_peeks_read_the_fields_decode_reads():
    """The header fields read without a decode (collector, replay) are the ones
    decode_event finds, at the pinned offsets."""
    ev = events.Event(11, 0xFFFF_FFFF_0000_0001, 3, 0x8765_4321, 5, 6, 16, events.Kind.EXIT,
                      0, 0, "sh", b"", b"")
    raw = events.encode_event(ev)
    assert events.peek_kind(raw) == events.Kind.EXIT == events.decode_event(raw).kind
    assert events.peek_pid(raw) == 0x8765_4321 == events.decode_event(raw).pid
    assert events.peek_end_ns(raw) == 0xFFFF_FFFF_0000_0001 == events.decode_event(raw).end_ns


def test_opaque_counts_layout_matches_c(tmp_path):
    c = _c_values(tmp_path, "s3s_opaque", list(events.OPAQUE_FIELD_OFFSETS),
                  'printf("SIZE %zu\\nEVERY %llu\\n", sizeof(struct s3s_opaque), '
                  'S3S_OPAQUE_EVERY_NS);')
    assert c.pop("SIZE") == events.OPAQUE.size == 24
    assert c.pop("EVERY") == events.OPAQUE_EVERY_NS
    assert c == events.OPAQUE_FIELD_OFFSETS
