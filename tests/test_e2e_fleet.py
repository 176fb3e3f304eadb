"""Fleet mode: collectors on two "hosts" feed one aggregator over CURVE TCP."""
from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from conftest import free_port, need_root_bpf, wait_until
from fleet import S3SLOWER, GatedClient, aggregator, collector, stop_all, summary

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _no_stragglers():
    yield
    stop_all()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    allowed = d / "allowed"
    allowed.mkdir()
    for name in ("server", "host-a", "host-b", "intruder"):
        subprocess.run([S3SLOWER, "keygen", "--out", str(d), "--name", name], check=True,
                       capture_output=True)
    for name in ("host-a", "host-b"):
        (allowed / f"{name}.key").write_bytes((d / f"{name}.key").read_bytes())
    return d


def _curve_collector(tmp, keys, name, port, pid):
    return collector(tmp, name, [
        "--connect", f"tcp://127.0.0.1:{port}", "--hostname", name, "--pid", str(pid),
        "--curve-secret-key", str(keys / f"{name}.key_secret"),
        "--curve-server-key", str(keys / "server.key")])


def _curve_aggregator(tmp, keys, port):
    return aggregator(tmp, "agg", [
        "--bind", f"tcp://127.0.0.1:{port}", "--allow-root",
        "--curve-secret-key", str(keys / "server.key_secret"),
        "--allowed-keys", str(keys / "allowed")])


def test_two_hosts_one_aggregator_over_curve(tmp_path, keys, moto_http):
    need_root_bpf()
    port = free_port()
    agg = _curve_aggregator(tmp_path, keys, port)
    clients = {h: GatedClient(moto_http.url, f"{h}-{uuid.uuid4().hex[:6]}")
               for h in ("host-a", "host-b")}
    cols = [_curve_collector(tmp_path, keys, h, port, c.pid) for h, c in clients.items()]
    cap_err = open(tmp_path / "tcpdump.err", "w")
    cap = subprocess.Popen(["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-w", str(tmp_path / "wire.pcap"),
                            f"tcp port {port}"], stderr=cap_err)
    try:
        wait_until(lambda: "listening on" in (tmp_path / "tcpdump.err").read_text(), 15,
                   "tcpdump to listen")
        sent = {h: c.burst(3)["requests"] for h, c in clients.items()}
        for h, c in clients.items():
            wait_until(lambda: len([r for r in agg.records() if r["pid"] == c.pid]) >= sent[h],
                       20, f"records of {h}")
        by_host = {h: [r for r in agg.records() if r["pid"] == c.pid]
                   for h, c in clients.items()}
        for h, recs in by_host.items():
            assert len(recs) == sent[h]
            assert {r["hostname"] for r in recs} == {h}
            assert {r["operation"] for r in recs} == {"CreateBucket", "PutObject", "GetObject"}
    finally:
        cap.terminate()
        cap.wait(10)
        for c in clients.values():
            c.close()
        for col in cols:
            col.stop()
        agg.stop()
    wire = (tmp_path / "wire.pcap").read_bytes()
    # 14 requests and responses carry well over 14 * 300 bytes of heads: a
    # capture smaller than that missed the traffic and would prove nothing
    assert len(wire) > 14 * 300, "the capture saw no traffic"
    for h, c in clients.items():
        bucket = by_host[h][0]["bucket"].encode()
        assert bucket not in wire
    assert b"Host:" not in wire and b"HTTP/1.1" not in wire


def test_unknown_collector_key_is_refused(tmp_path, keys, moto_http):
    need_root_bpf()
    port = free_port()
    agg = _curve_aggregator(tmp_path, keys, port)
    client = GatedClient(moto_http.url, f"intr-{uuid.uuid4().hex[:6]}")
    col = _curve_collector(tmp_path, keys, "intruder", port, client.pid)
    ok_client = GatedClient(moto_http.url, f"ok-{uuid.uuid4().hex[:6]}")
    ok_col = None
    try:
        client.burst(1)
        wait_until(lambda: "refused collector" in agg.err(), 15, "the refusal to be logged")
        # positive control: an allowed collector's records, traced after the
        # intruder's burst and its refusal, do arrive at this aggregator
        ok_col = _curve_collector(tmp_path, keys, "host-a", port, ok_client.pid)
        n = ok_client.burst(1)["requests"]
        wait_until(lambda: len(_records_of(agg, ok_client.pid)) == n, 20,
                   "the allowed collector's records")
        assert _records_of(agg, client.pid) == []
        assert col.proc.poll() is None, "a refused collector keeps tracing"
    finally:
        client.close()
        ok_client.close()
        col.stop()
        if ok_col is not None:
            ok_col.stop()
        agg.stop()


def test_plain_tcp_needs_insecure(tmp_path):
    r = subprocess.run([S3SLOWER, "aggregator", "--bind", "tcp://127.0.0.1:1", "--allow-root"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "--insecure" in r.stderr


def _insecure_agg(tmp, name, port):
    return aggregator(tmp, name, ["--bind", f"tcp://127.0.0.1:{port}", "--allow-root",
                                  "--insecure"])


def _records_of(agg, pid):
    return [r for r in agg.records() if r["pid"] == pid]


def test_aggregator_outage_buffered_then_bounded_and_counted(tmp_path, moto_http):
    need_root_bpf()
    port = free_port()
    aggs = [_insecure_agg(tmp_path, "agg1", port)]
    client = GatedClient(moto_http.url, f"out-{uuid.uuid4().hex[:6]}")
    try:
        col = collector(tmp_path, "col", ["--connect", f"tcp://127.0.0.1:{port}", "--insecure",
                                          "--pid", str(client.pid), "--buffer-messages", "12"])
    except BaseException:
        client.close()
        aggs[0].stop()
        raise
    try:
        n1 = client.burst(3)["requests"]
        wait_until(lambda: len(_records_of(aggs[0], client.pid)) == n1, 20, "phase 1 records")
        aggs[0].stop()
        # within the bound: the outage's requests arrive after reconnect
        n2 = client.burst(3)["requests"]
        time.sleep(2.5)   # the outage lasts a few seconds; heartbeats queue too
        aggs.append(_insecure_agg(tmp_path, "agg2", port))
        wait_until(lambda: len(_records_of(aggs[1], client.pid)) == n2, 20,
                   "the outage's requests after reconnect")
        # beyond the bound: dropped and counted, never blocking the collector
        # (the bound counts messages, and traffic this light goes out in at
        # most ~20 a second: the burst outlasts twelve of them)
        aggs[1].stop()
        n3 = client.burst(300)["requests"]
        aggs.append(_insecure_agg(tmp_path, "agg3", port))
        wait_until(lambda: _records_of(aggs[2], client.pid), 20,
                   "what the bound kept of the second outage, after reconnect")
        assert col.proc.poll() is None, "the collector stays up through the outage"
    finally:
        client.close()
        col.stop()
        time.sleep(1)     # its last messages (BYE) in flight to agg3; the sums below tell
        for a in aggs:
            a.stop()
    c = summary(col, "collector")
    a = [summary(x, "aggregator") for x in aggs]
    assert 0 < len(_records_of(aggs[2], client.pid)) < n3
    assert c["dropped_events"] > 0
    assert a[2]["lost"]["collector_outbox"] == c["dropped_events"]
    # every event the collector drained was delivered to some aggregator or counted lost
    assert sum(x["events"] for x in a) + c["dropped_events"] == c["events"]


def test_garbage_is_counted_and_traffic_still_flows(tmp_path, moto_http):
    import msgpack
    import zmq

    from s3slower.common import protocol
    need_root_bpf()
    port = free_port()
    agg = _insecure_agg(tmp_path, "agg", port)
    client = col = None
    try:
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 2000)
        push.connect(f"tcp://127.0.0.1:{port}")
        good = protocol.encode(protocol.Message(protocol.MsgKind.HELLO, "g", 1, 0, 0,
                                                {"pid": 1}))
        bad = [b"", b"\x00garbage\xff", good[:-4], msgpack.packb([9, 1, "g", 1, 0, 0, {}]),
               msgpack.packb([1, 2, "g", 1, 1, 0, {"events": [b"\x00" * 10]}]),
               b"\x93" + b"\x00" * (protocol.MAX_MESSAGE_BYTES + 10)]
        for frame in bad:
            push.send(frame)
        with socket_raw(port) as raw:      # not even ZMTP
            raw.sendall(b"GET / HTTP/1.1\r\n\r\n" * 100)
        push.close()
        ctx.term()
        client = GatedClient(moto_http.url, f"gb-{uuid.uuid4().hex[:6]}")
        col = collector(tmp_path, "col", ["--connect", f"tcp://127.0.0.1:{port}",
                                          "--insecure", "--pid", str(client.pid)])
        n = client.burst(2)["requests"]
        wait_until(lambda: len(_records_of(agg, client.pid)) == n, 20, "real records")
        assert agg.proc.poll() is None
    finally:
        if client:
            client.close()
        if col:
            col.stop()
        agg.stop()
    s = summary(agg, "aggregator")
    # 5 frames fail to decode; the EVENTS one decodes but its record is malformed
    assert s["lost"]["malformed"] == len(bad)


def socket_raw(port):
    import socket
    return socket.create_connection(("127.0.0.1", port))
