"""Round trips and rejections for every wire message (habit 4)."""
import msgpack
import pytest

from s3slower.common import protocol
from s3slower.common.protocol import Message, MsgKind, ProtocolError

BODIES = {
    MsgKind.HELLO: {"pid": 12, "version": "0.1.0"},
    MsgKind.EVENTS: {"events": [b"\x00" * 80, b"\x01" * 90]},
    MsgKind.HEARTBEAT: {"stats": {"events": 3}, "lost": {"ringbuf": 0}},
    MsgKind.PROCESS: {"pid": 7, "comm": "aws", "exe": "/usr/bin/python3",
                      "cmdline": "aws s3 ls", "target": "aws-cli", "labels": {"env": "prod"},
                      "cgroup": "/system.slice/docker-" + "ab" * 32 + ".scope", "ns_pid": 1},
    MsgKind.BYE: {},
}


@pytest.mark.parametrize("kind", list(MsgKind))
def test_round_trip(kind):
    msg = Message(kind, "host-a", 2**62, 41, 1_700_000_000_000_000_000, BODIES[kind])
    assert protocol.decode(protocol.encode(msg)) == msg


def _frame(*fields):
    return msgpack.packb(list(fields), use_bin_type=True)


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", b"garbage that is not msgpack",
    _frame(2, 1, "h", 1, 0, 0, {}),                      # wrong version
    _frame(1, 99, "h", 1, 0, 0, {}),                     # unknown kind
    _frame(1, 1, "h", 1, 0, 0),                          # short envelope
    _frame(1, 2, "h", 1, 0, 0, {"events": ["text"]}),    # events not bytes
    _frame(1, 3, "h", 1, 0, 0, {"stats": {}, "lost": {"x": "1"}}),
    _frame(1, 4, "h", 1, 0, 0, {"pid": "7"}),
    _frame(1, 4, "h", 1, 0, 0, {"pid": 7, "cgroup": b"/docker/x"}),  # cgroup not str
    _frame(1, 4, "h", 1, 0, 0, {"pid": 7, "cgroup": "/", "ns_pid": "1"}),
    _frame(1, 1, 5, 1, 0, 0, {}),                        # hostname not str
    _frame(1, 1, "h", True, 0, 0, {}),                   # bool is not an int
])
def test_rejected(frame):
    with pytest.raises(ProtocolError):
        protocol.decode(frame)


def test_process_without_placement_still_decodes():
    """A version-1 collector from before cgroup / ns_pid: those keys are optional."""
    body = {k: v for k, v in BODIES[MsgKind.PROCESS].items() if k not in ("cgroup", "ns_pid")}
    msg = Message(MsgKind.PROCESS, "h", 1, 0, 0, body)
    assert protocol.decode(protocol.encode(msg)).body == body


def test_oversized_rejected_before_parsing():
    with pytest.raises(ProtocolError):
        protocol.decode(b"\x00" * (protocol.MAX_MESSAGE_BYTES + 1))
