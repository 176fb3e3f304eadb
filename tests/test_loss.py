"""Loss is data: every place that drops something counts it, by source."""
from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest
import zmq

from conftest import need_root_bpf
from s3slower.aggregator.pipeline import Pipeline
from s3slower.common import protocol
from s3slower.common.losses import Loss
from s3slower.common.protocol import Message, MsgKind


def _msg(seq, kind=MsgKind.HEARTBEAT, instance=1, host="h", body=None):
    body = body if body is not None else {"stats": {}, "lost": {}}
    return Message(kind, host, instance, seq, 0, body)


def test_sequence_gap_counted_as_transport_loss():
    p = Pipeline()
    for seq in (0, 1, 2, 6, 7):
        p.handle(_msg(seq), now_wall_ns=0)
    assert p.statistics().lost.get("transport") == 3


def test_collector_restart_is_not_loss():
    p = Pipeline()
    p.handle(_msg(0, instance=1), 0)
    p.handle(_msg(5000, instance=1, body={"stats": {}, "lost": {"ringbuf": 4}}), 0)
    p.handle(_msg(0, instance=2), 0)   # new instance, same host: a restart
    p.handle(_msg(1, instance=2), 0)
    lost = p.statistics().lost
    assert lost.get("transport") == 4999   # seqs 1..4999 of instance 1
    assert lost.get("ringbuf") == 4        # the old instance's totals are kept


def test_heartbeat_loss_is_per_source():
    p = Pipeline()
    p.handle(_msg(0, body={"stats": {}, "lost": {"ringbuf": 2, "collector_outbox": 9}}), 0)
    p.handle(_msg(1, host="other", body={"stats": {}, "lost": {"ringbuf": 3}}), 0)
    lost = p.statistics().lost
    assert lost["ringbuf"] == 5 and lost["collector_outbox"] == 9


def test_malformed_frames_counted():
    from s3slower.aggregator.service import Aggregator
    agg = Aggregator(None, Pipeline(), [], clock=lambda: 0)
    agg.handle_frames([b"junk", protocol.encode(_msg(0))[:-3], protocol.encode(_msg(0))])
    assert agg.pipeline.statistics().lost["malformed"] == 2


@pytest.mark.e2e
def test_full_ring_buffer_is_counted_by_the_kernel_and_reported():
    """A one-page ring buffer cannot hold a record with a full 4 KiB capture:
    every such record is dropped in the kernel, counted, and the count reaches
    the heartbeat."""
    need_root_bpf()
    from s3slower.collector import hostprep
    from s3slower.collector.probes import ProgramOptions, Probes
    from s3slower.collector.publisher import Publisher
    from s3slower.collector.service import Collector
    from s3slower.common.targets import Selection

    hostprep.prepare()
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data or len(data) < 60_000:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind("inproc://loss")
    pub = Publisher(ctx, "inproc://loss", bind=False, hostname="t", wall_offset_ns=0)
    col = Collector(lambda cb: Probes(ProgramOptions(trace_all=True, ringbuf_pages=1), cb),
                    pub, Selection())
    try:
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        body = b"x" * 60_000
        # chunked: a body the kernel copies call by call (a Content-Length
        # body would be counted there, one record, and never fill the ring)
        head = (f"PUT /b/k HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(head)
            for i in range(0, len(body), 8192):
                c.sendall(body[i:i + 8192])   # 8 KiB writes: 4 KiB captures
            c.recv(100)
        t.join(5)
        col.probes.consume()
        assert col.probes.lost_counts()[Loss.RINGBUF] >= len(body) // 8192
        col.heartbeat()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            msg = protocol.decode(pull.recv())
            if msg.kind is MsgKind.HEARTBEAT:
                assert msg.body["lost"]["ringbuf"] >= len(body) // 8192
                break
        else:
            pytest.fail("no heartbeat")
    finally:
        col.probes.close()
        pub.close()
        pull.close()
        ctx.term()
        srv.close()
