"""Boot test (issue 7): the .deb in a real systemd, inside systemd-nspawn.

A minimal Debian bookworm root is made once with debootstrap (from the mirror
in this host's apt sources: tests/debian_root.py) and cached under
/var/cache/s3slower-test/, with the package's dependencies already installed: apt then resolves the .deb's
Depends from what is there, offline.  Each run boots that root with a
throw-away overlay (--volatile=overlay) and a private network, and inside it:
installs the .deb, `systemctl start s3slower`, sees both units active (Type=
notify: active means READY=1 arrived), asks /health, stops, checks that a
disabled service stays disabled and a changed config stays changed across a
reinstall, then purges and checks nothing is left.

The container is given what BPF needs (CAP_BPF, CAP_PERFMON, the bpf and
perf_event_open system calls, the host's kernel headers package), so the
collector must start there as on a host: a collector that fails -- its BPF
program does not compile or load, or the container refuses BPF -- fails the
test, with the collector's journal and which of the two it looks like.
Every subprocess has a timeout.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from debian_root import APT_TIMEOUT_S, SUITE, cached_root, nspawn_base_args

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
# Kernel headers for BCC inside the container (the package recommends them).
EXTRA_BASE_PACKAGES = ("linux-headers-amd64",)
BOOT_TIMEOUT_S = 90
STEP_TIMEOUT_S = 60
START_TIMEOUT_S = 240
SHUTDOWN_TIMEOUT_S = 30
METRICS_PORT = 9000
# The collector's own journal lines (systemd's name the unit "BPF probes").
OWN_LINES = "SYSLOG_IDENTIFIER=s3slower"
# Words of a kernel or container that refuses BPF (permission, not our code).
BPF_REFUSED = re.compile(r"Operation not permitted|EPERM|Permission denied|CAP_BPF|CAP_PERFMON"
                         r"|perf_event_open|tracefs")


def _version() -> str:
    return re.search(r'^__version__ = "([^"]+)"', (ROOT / "__init__.py").read_text(),
                     re.M).group(1)


def _run(argv, timeout, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def _deb_depends(deb: Path) -> list[str]:
    field = _run(["dpkg-deb", "-f", str(deb), "Depends"], STEP_TIMEOUT_S).stdout
    return sorted(d.strip().split()[0] for d in field.split(",") if d.strip())


@pytest.fixture(scope="module")
def deb() -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    r = _run(["make", "-C", str(ROOT), "deb"], 600)
    assert r.returncode == 0, r.stdout + r.stderr
    path = ROOT / "dist" / f"s3slower_{_version()}-1_all.deb"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def base_root(deb) -> Path:
    """The cached bookworm root with the .deb's dependencies installed."""
    if os.geteuid() != 0:
        pytest.skip("the boot test needs root (debootstrap, systemd-nspawn)")
    for tool, pkg in (("debootstrap", "debootstrap"), ("systemd-nspawn", "systemd-container"),
                      ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (package {pkg}; "
                        "tests/setup-deploy-tools.sh installs it)")
    return cached_root(SUITE, [*_deb_depends(deb), *EXTRA_BASE_PACKAGES])


class Container:
    """A booted nspawn container; `sh` runs a command inside it via nsenter."""

    def __init__(self, root: Path, dist: Path, log: Path):
        self.log = log
        self.name = f"s3slower-boot-{os.getpid()}"
        self.proc = subprocess.Popen(
            [*nspawn_base_args(), "-D", str(root), "-b", f"--machine={self.name}",
             "--volatile=overlay", "--private-network",
             "--capability=CAP_BPF,CAP_PERFMON", "--system-call-filter=bpf perf_event_open",
             f"--bind-ro={dist}:/mnt/dist"],
            stdin=subprocess.DEVNULL, stdout=open(log, "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self.leader = self._find_leader()

    def _find_leader(self) -> int:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self.proc.returncode}:\n"
                                     f"{self.log.read_text()[-3000:]}")
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    stat = (d / "stat").read_text()
                except OSError:
                    continue
                comm = stat[stat.index("(") + 1:stat.rindex(")")]
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                # nspawn's own short-lived helper children are systemd-nspawn
                if ppid == self.proc.pid and comm in ("systemd", "init"):
                    return int(d.name)
            time.sleep(0.1)
        raise AssertionError("the container's init never appeared")

    def sh(self, script: str, timeout: float = STEP_TIMEOUT_S) -> subprocess.CompletedProcess:
        return _run(["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "--",
                     "/bin/sh", "-c", script], timeout, stdin=subprocess.DEVNULL)

    def ok(self, script: str, timeout: float = STEP_TIMEOUT_S) -> str:
        r = self.sh(script, timeout)
        assert r.returncode == 0, f"`{script}` exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def wait_booted(self) -> str:
        """The system state once boot is over (systemd answers only once it is up;
        "offline" until its socket exists, which a slow machine shows)."""
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        r = None
        while time.monotonic() < deadline:
            r = self.sh("systemctl is-system-running --wait", max(1, deadline - time.monotonic()))
            if r.stdout.strip() not in ("", "initializing", "starting", "offline"):
                return r.stdout.strip()
            time.sleep(0.2)
        return f"{r.stdout.strip()} {r.stderr.strip()}" if r else "no answer"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # nspawn: orderly shutdown of the container
            try:
                self.proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=SHUTDOWN_TIMEOUT_S)


def _start_failure(box: Container, start: subprocess.CompletedProcess) -> str:
    """Why `systemctl start s3slower` failed, in one message: the collector's
    journal, and whether it reads as our BPF program failing to compile or
    load, or as this container refusing BPF (still a failure: the container is
    set up to allow it, see Container)."""
    journal = box.sh("journalctl -u s3slower-collector --no-pager -n 40 -o cat "
                     + OWN_LINES).stdout
    col = box.sh("systemctl is-active s3slower-collector").stdout.strip()
    refused = next((l.strip() for l in journal.splitlines() if BPF_REFUSED.search(l)), "")
    if col == "active":
        why = "the collector is active, so the aggregator or the top unit failed"
    elif "cannot load the BPF program" in journal and not refused:
        why = "the collector's BPF program did not compile or load"
    elif refused:
        why = (f"the collector could not load BPF, and the container looks like it refused "
               f"it ({refused}); the container is given CAP_BPF, CAP_PERFMON and the bpf "
               f"and perf_event_open system calls, so this is a failure too: check the "
               f"host kernel and systemd-nspawn, or the collector's error handling")
    else:
        why = "the collector failed to start"
    return (f"`systemctl start s3slower` exited {start.returncode}: {why}.\n"
            f"systemctl said: {start.stderr.strip()}\ncollector journal:\n{journal}")


HEALTH = ("python3 -c \"import urllib.request,sys; "
          f"r=urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/health', timeout=5); "
          "print(r.status); sys.exit(r.status != 200)\"")
WAIT_HEALTH = f"for i in $(seq 100); do {HEALTH} 2>/dev/null && exit 0; sleep 0.2; done; exit 1"


def test_deb_boots_starts_stops_and_purges(base_root, deb, tmp_path, capsys):
    report = []
    dist = tmp_path / "dist"          # a copy: a rebuild of dist/ cannot change it under us
    dist.mkdir()
    shutil.copy(deb, dist / deb.name)
    box = Container(base_root, dist, tmp_path / "console.log")
    try:
        state = box.wait_booted()
        assert state in ("running", "degraded"), f"container boot: {state}"
        report.append(f"booted {SUITE} in systemd-nspawn ({state})")

        # install: the dependencies resolve, the user exists, the service is enabled
        inst = box.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                      f"--no-install-recommends /mnt/dist/{deb.name}", APT_TIMEOUT_S)
        assert inst.returncode == 0, f"apt-get install failed:\n{inst.stdout}\n{inst.stderr}"
        box.ok("getent passwd s3slower && getent group s3slower")
        box.ok("test -f /etc/s3slower/s3slower.yaml && test -f /etc/s3slower/targets.yml")
        assert box.ok("systemctl is-enabled s3slower.service").strip() == "enabled"
        assert box.sh("systemctl is-enabled s3slower-collector.service").stdout.strip() != "enabled"
        report.append("apt-get install of the .deb: ok (user, conffiles, enabled)")

        # start both through the one name
        start = box.sh("systemctl start s3slower", START_TIMEOUT_S)
        if start.returncode != 0:
            pytest.fail(_start_failure(box, start))
        for unit in ("s3slower-collector", "s3slower-aggregator", "s3slower"):
            assert box.sh(f"systemctl is-active {unit}").stdout.strip() == "active", unit
        report.append("systemctl start s3slower: both units active, READY=1 from both")
        agg_state = box.ok("systemctl show -p User,ActiveState,SubState s3slower-aggregator")
        assert "User=s3slower" in agg_state and "SubState=running" in agg_state
        assert box.ok(WAIT_HEALTH, 30).strip().endswith("200")
        metrics = box.ok(f"python3 -c \"import urllib.request; print(urllib.request.urlopen("
                         f"'http://127.0.0.1:{METRICS_PORT}/metrics', timeout=5).read().decode())\"")
        assert "s3slower_events_lost_total" in metrics
        report.append(f"/health on port {METRICS_PORT}: 200; /metrics served")
        box.ok("stat -c '%U:%G %a' /run/s3slower | grep -qx 'root:s3slower 750'")
        box.ok("stat -c '%G %a' /run/s3slower/collector.sock | grep -qx 's3slower 660'")
        report.append("/run/s3slower root:s3slower 0750, socket group s3slower 0660")

        # reload: both halves get SIGHUP, re-read their files and keep running
        pids = box.ok("systemctl show -p MainPID --value s3slower-collector "
                      "s3slower-aggregator").split()
        box.ok("systemctl reload s3slower", STEP_TIMEOUT_S)
        # first the positive signal (each half says it re-read), then: same pids, active
        said = {"s3slower-aggregator": "configuration re-read: no change",
                "s3slower-collector": "configuration reloaded: targets applied"}
        for unit in said:
            box.ok(f"for i in $(seq 150); do journalctl -u {unit} -o cat --no-pager | "
                   f"grep -qF '{said[unit]}' && exit 0; sleep 0.2; done; "
                   f"journalctl -u {unit} --no-pager | tail -12; exit 1", STEP_TIMEOUT_S)
        assert box.ok("systemctl show -p MainPID --value s3slower-collector "
                      "s3slower-aggregator").split() == pids
        for unit in said:
            assert box.sh(f"systemctl is-active {unit}").stdout.strip() == "active", unit
        report.append("systemctl reload s3slower: both halves re-read their configuration "
                      "(SIGHUP) and keep running, same pids")

        # stop: both go.  PartOf= queues their stop jobs, which run after the
        # top unit's (ordering is reversed on stop), so `stop` may return first.
        box.ok("systemctl stop s3slower", STEP_TIMEOUT_S)
        box.ok("for i in $(seq 150); do n=0; for u in s3slower-collector s3slower-aggregator; do "
               "systemctl is-active -q $u && n=1; done; [ $n = 0 ] && exit 0; sleep 0.2; done; "
               "exit 1", STEP_TIMEOUT_S)
        report.append("systemctl stop s3slower: both units stopped")

        # an admin's choices survive a reinstall (the upgrade path)
        box.ok("systemctl disable s3slower.service && "
               "echo '# changed by the admin' >> /etc/s3slower/s3slower.yaml")
        box.ok(f"DEBIAN_FRONTEND=noninteractive dpkg -i /mnt/dist/{deb.name}", APT_TIMEOUT_S)
        assert box.sh("systemctl is-enabled s3slower.service").stdout.strip() == "disabled"
        box.ok("grep -q '^# changed by the admin' /etc/s3slower/s3slower.yaml")
        assert box.sh("systemctl is-active s3slower").stdout.strip() != "active"
        report.append("reinstall: disabled stays disabled, changed config kept, nothing started")

        # purge leaves nothing behind
        box.ok("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q s3slower", APT_TIMEOUT_S)
        left = box.sh("dpkg-query -W -f='${Status}' s3slower").stdout
        assert "installed" not in left.replace("not-installed", ""), left
        for path in ("/etc/s3slower", "/var/log/s3slower", "/var/cache/s3slower",
                     "/run/s3slower", "/usr/bin/s3slower", "/usr/lib/python3/dist-packages/s3slower",
                     "/lib/systemd/system/s3slower.service",
                     "/etc/systemd/system/multi-user.target.wants/s3slower.service"):
            assert box.sh(f"test -e {path}").returncode != 0, f"{path} left after purge"
        assert box.sh("getent passwd s3slower").returncode != 0
        report.append("apt-get purge: package, config, logs, cache, unit links and user gone")
    finally:
        box.stop()
        with capsys.disabled():
            print("\n  boot test: " + "\n  boot test: ".join(report))
