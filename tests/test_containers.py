"""Container identity: the id parser over real cgroup path shapes, the records and
metrics that carry it, the announcement that brings it (docs/containers.md)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from prometheus_client import CollectorRegistry

from golden import harness
from s3slower.aggregator import metrics as metrics_mod
from s3slower.aggregator.containers import Container, container_id, from_process
from s3slower.aggregator.metrics import OTHER, Metrics
from s3slower.collector import processes

ID = "3f4c8a1e9b2d7c6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
ID2 = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d"
POD = "kubepods-burstable-pod8d5f2c1a_4b3e_4f6a_9c2d_1e0f3a4b5c6d.slice"

# (cgroup path as /proc/PID/cgroup shows it from the host, container id)
SHAPES = [
    # containerd / CRI, systemd driver (kubeadm's default since 1.22)
    (f"/kubepods.slice/kubepods-burstable.slice/{POD}/cri-containerd-{ID}.scope", ID),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podab.slice/"
     f"cri-containerd-{ID}.scope", ID),
    (f"/kubepods.slice/cri-containerd-{ID}.scope", ID),                 # guaranteed QoS
    # containerd / CRI, cgroupfs driver
    (f"/kubepods/burstable/pod8d5f2c1a-4b3e-4f6a-9c2d-1e0f3a4b5c6d/{ID}", ID),
    (f"/kubepods/pod8d5f2c1a-4b3e-4f6a-9c2d-1e0f3a4b5c6d/{ID}", ID),
    # containerd with systemd_cgroup off under a systemd kubelet
    (f"/system.slice/containerd.service/{POD}:cri-containerd:{ID}", ID),
    # CRI-O
    (f"/kubepods.slice/kubepods-burstable.slice/{POD}/crio-{ID}.scope", ID),
    (f"/kubepods.slice/kubepods-burstable.slice/{POD}/crio-conmon-{ID}.scope", ""),  # monitor
    # Docker: systemd driver, cgroupfs driver, docker in docker
    (f"/system.slice/docker-{ID}.scope", ID),
    (f"/docker/{ID}", ID),
    (f"/docker/{ID2}/docker/{ID}", ID),
    (f"/system.slice/docker-{ID}.scope/init.scope", ID),               # systemd inside it
    # Podman: rootful, rootless, cgroupfs, split, and its monitor
    (f"/machine.slice/libpod-{ID}.scope", ID),
    (f"/machine.slice/libpod-{ID}.scope/container", ID),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope", ID),
    (f"/libpod_parent/libpod-{ID}", ID),
    (f"/machine.slice/libpod-payload-{ID}.scope/container", ID),
    (f"/machine.slice/libpod-conmon-{ID}.scope", ""),
    # nerdctl
    (f"/system.slice/nerdctl-{ID}.scope", ID),
    # systemd-nspawn machines (names systemd-escaped), their payload, docker in one
    ("/machine.slice/machine-debian.scope", "debian"),
    ("/machine.slice/machine-deb\\x2dtest.scope", "deb-test"),
    ("/machine.slice/machine-web1.scope/payload", "web1"),
    ("/machine.slice/machine-web1.scope/payload/system.slice/nginx.service", "web1"),
    (f"/machine.slice/machine-web1.scope/payload/system.slice/docker-{ID}.scope", ID),
    # not containers
    ("/", ""),
    ("/init.scope", ""),
    ("/system.slice/sshd.service", ""),
    ("/system.slice/docker.service", ""),                  # dockerd itself
    ("/system.slice/containerd.service", ""),
    ("/user.slice/user-1000.slice/session-3.scope", ""),
    (f"/kubepods.slice/kubepods-burstable.slice/{POD}", ""),   # a pod, not a container
    (f"/system.slice/docker-{ID[:12]}.scope", ""),         # short ids are never in paths
    (f"/system.slice/docker-{ID.upper()}.scope", ""),
    ("", ""),
]


@pytest.mark.parametrize("path, expected", SHAPES)
def test_container_id_of_real_path_shapes(path, expected):
    assert container_id(path) == expected


def test_a_container_from_an_announcement():
    docker = f"/system.slice/docker-{ID}.scope"
    assert from_process({"cgroup": docker, "ns_pid": 1}, 4242) == Container(docker, ID, 1)
    # the host's pid namespace (docker --pid=host): still that container
    assert from_process({"cgroup": docker, "ns_pid": 4242}, 4242) == Container(docker, ID, 4242)
    # a pid namespace of its own under an unknown runtime: a container without id
    assert from_process({"cgroup": "/lxc.payload.web", "ns_pid": 7}, 4242) == \
        Container("/lxc.payload.web", "", 7)
    # host processes, and announcements of a collector from before cgroups
    assert from_process({"cgroup": "/user.slice/user-0.slice/session-1.scope",
                         "ns_pid": 4242}, 4242) is None
    assert from_process({"cgroup": "/", "ns_pid": 0}, 4242) is None
    assert from_process({"pid": 4242, "labels": {}}, 4242) is None


# -- through the pipeline ---------------------------------------------------------

REQUEST = [["c1", "connect", 0, "127.0.0.1:9000"],
           ["c1", ">", 10, 20, "GET /b/k HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n"],
           ["c1", "<", 30, 40, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]]


def _records(process: dict | None) -> list[dict]:
    case = harness.Case("containers", "", harness.parse_events(REQUEST), [],
                        processes=[process] if process else [])
    return harness.run(case).records


def test_records_of_a_container_process_carry_its_identity():
    cgroup = f"/kubepods.slice/kubepods-burstable.slice/{POD}/cri-containerd-{ID}.scope"
    (rec,) = _records({"pid": harness.PID, "labels": {}, "cgroup": cgroup, "ns_pid": 7})
    assert (rec["cgroup"], rec["container_id"], rec["container_pid"]) == (cgroup, ID, 7)
    assert rec["pid"] == harness.PID and rec["status_code"] == 200


@pytest.mark.parametrize("process", [
    None,                                                           # never announced
    {"pid": harness.PID, "labels": {}},                             # an older collector
    {"pid": harness.PID, "labels": {}, "cgroup": "/system.slice/cron.service",
     "ns_pid": harness.PID}])                                       # a host process
def test_records_of_other_processes_keep_exactly_the_keys_they_had(process):
    (rec,) = _records(process)
    assert list(rec)[:21] == ["timestamp", "hostname", "pid", "tid", "comm", "method",
                              "operation", "bucket", "key", "endpoint", "path", "status_code",
                              "is_error", "error_code", "request_size", "response_size",
                              "ttfb_ms", "latency_ms", "tls", "complete", "labels"]
    assert not {"cgroup", "container_id", "container_pid"} & set(rec)   # later keys: others'
    json.dumps(rec)


# -- metrics ----------------------------------------------------------------------

def _rec(cid: str):
    from test_metrics import rec
    return rec(container=Container(f"/docker/{cid}", cid, 1) if cid else None)


def test_no_container_label_unless_asked():
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.observe(_rec(ID))
    assert "container_id" not in m.label_names
    assert reg.get_sample_value("s3slower_requests_total", {
        "hostname": "h1", "comm": "aws", "s3_operation": "GetObject", "bucket": "b",
        "endpoint": "s3.local:9000"}) == 1


def test_container_label_is_bounded_and_counts_what_it_folds(monkeypatch):
    monkeypatch.setattr(metrics_mod, "MAX_CONTAINER_VALUES", 3)
    reg = CollectorRegistry()
    m = Metrics(reg, extra_label_keys=("team",), container_label=True)
    assert m.label_names[-1] == "container_id"
    ids = [f"{i:064x}" for i in range(5)]
    for cid in ["", *ids]:
        m.observe(_rec(cid))
    base = {"hostname": "h1", "comm": "aws", "s3_operation": "GetObject", "bucket": "b",
            "endpoint": "s3.local:9000", "team": ""}
    g = reg.get_sample_value
    # "" (a host process) and one id fit under the cap of 3 with __other__
    assert g("s3slower_requests_total", {**base, "container_id": ""}) == 1
    assert g("s3slower_requests_total", {**base, "container_id": ids[0]}) == 1
    assert g("s3slower_requests_total", {**base, "container_id": ids[1]}) is None
    assert g("s3slower_requests_total", {**base, "container_id": OTHER}) == 4
    assert g("s3slower_label_overflow_total", {"label": "container_id"}) == 4
    assert m.statistics().overflow == {"container_id": 4}


# -- the collector's side: /proc ---------------------------------------------------

def test_placement_of_this_process_is_what_proc_says():
    with open("/proc/self/cgroup") as f:
        lines = f.read().splitlines()
    path, ns_pid = processes.placement(os.getpid())
    assert path in {line.split(":", 2)[2] for line in lines}
    assert ns_pid == os.getpid()          # the tests run in the host's pid namespace
    assert processes.placement(2**22 + 1) is None      # above pid_max: no such process


def test_placement_in_a_pid_namespace_of_its_own():
    if os.geteuid() != 0:
        pytest.skip("a pid namespace needs root")
    child = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--",
                              "sh", "-c", "echo ready; read line"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        inner = [int(p) for p in open(f"/proc/{child.pid}/task/{child.pid}/children")
                 .read().split()]
        assert len(inner) == 1
        assert processes.placement(inner[0])[1] == 1   # the namespace's init
    finally:
        child.stdin.close()
        child.wait(10)
