"""Debian roots made once with debootstrap and cached under /var/cache/s3slower-test/.

Used by the boot test (a root with the .deb's dependencies, booted with
systemd-nspawn) and the container test (a root with its own python3, libssl
and boto3, entered with unshare + chroot).  A root is built from the mirror in
this host's apt sources, its packages installed with apt inside it, and
stamped with what it holds: a root whose stamp differs is built again.  One
lock serialises builders (tests of several sessions may want the same root).
"""
from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

CACHE = Path("/var/cache/s3slower-test")
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_TIMEOUT_S = 1200
APT_TIMEOUT_S = 900


def mirror() -> str:
    """The Debian mirror this host's apt uses (one-line or deb822 sources)."""
    texts = []
    for p in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            texts.append(p.read_text())
        except OSError:
            continue
    for text in texts:
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", text, re.M):
            return m.group(1)
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.*)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
    return DEFAULT_MIRROR


def nspawn_base_args() -> list[str]:
    args = ["systemd-nspawn", "-q", "--register=no"]
    if not Path("/run/systemd/system").exists():
        args.append("--keep-unit")      # no systemd on this host to make a scope for us
    return args


def _run(argv, timeout, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def cached_root(name: str, packages: Sequence[str]) -> Path:
    """CACHE/name: a minimal SUITE root (systemd in it) with `packages` installed."""
    packages = sorted(set(packages))
    stamp = hashlib.sha256(" ".join([SUITE, *packages]).encode()).hexdigest()
    dest = CACHE / name
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = dest / ".s3slower-test-base"
        if not marker.exists() or marker.read_text() != stamp:
            _build(dest, packages, stamp)
    return dest


def _build(dest: Path, packages: list[str], stamp: str) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    r = _run(["debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus",
              SUITE, str(tmp), mirror()], DEBOOTSTRAP_TIMEOUT_S)
    assert r.returncode == 0, f"debootstrap failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    script = ("export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
              "apt-get install -y -qq --no-install-recommends " + " ".join(packages) +
              " >/dev/null && apt-get clean")
    r = _run([*nspawn_base_args(), "-D", str(tmp), "--pipe", "/bin/sh", "-c", script],
             APT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"installing {packages} in the base failed:\n{r.stderr[-3000:]}"
    (tmp / ".s3slower-test-base").write_text(stamp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
