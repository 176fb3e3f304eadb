"""Make this host able to run BCC: tracefs mounted, kernel headers found.

Debian kernels without their own headers (cloud and CI kernels) compile fine
against the distribution's generic headers once `-common` and `-<arch>` are
merged into one tree; BCC is pointed at it through BCC_KERNEL_SOURCE.
"""
from __future__ import annotations

import glob
import os
import platform
import subprocess
from pathlib import Path

HEADER_CACHE = Path("/var/cache/s3slower/kernel-headers")
TRACEFS_MOUNTS = (("tracefs", "/sys/kernel/tracing"), ("debugfs", "/sys/kernel/debug"))


class HostPrepError(RuntimeError):
    """The host lacks something BCC needs and it could not be provided."""


def ensure_tracefs() -> None:
    for fstype, where in TRACEFS_MOUNTS:
        probe = Path(where) / ("events" if fstype == "tracefs" else "tracing")
        if probe.exists():
            continue
        r = subprocess.run(["mount", "-t", fstype, fstype, where],
                           capture_output=True, text=True)
        if r.returncode != 0 and fstype == "tracefs":
            raise HostPrepError(f"cannot mount tracefs at {where}: {r.stderr.strip()}")


def kernel_source() -> str | None:
    """Return a BCC_KERNEL_SOURCE value, or None when the kernel's own headers exist."""
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return os.environ["BCC_KERNEL_SOURCE"]
    own = Path("/lib/modules") / platform.release() / "build" / "include"
    if own.is_dir():
        return None
    commons = sorted(glob.glob("/usr/src/linux-headers-*-common"))
    if not commons:
        raise HostPrepError(
            "no kernel headers: install linux-headers-$(dpkg --print-architecture)")
    common = commons[-1]
    flavour = sorted(p for p in glob.glob(common.removesuffix("-common") + "-*")
                     if not p.endswith("-common"))
    if not flavour:
        raise HostPrepError(f"{common} has no architecture headers beside it")
    merged = HEADER_CACHE / Path(flavour[-1]).name
    if not (merged / ".complete").exists():
        _merge(merged, [common, flavour[-1]])
    return str(merged)


def _merge(dest: Path, sources: list[str]) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    subprocess.run(["rm", "-rf", str(tmp)], check=True)
    tmp.mkdir(parents=True)
    for src in sources:
        subprocess.run(["cp", "-rs", "--remove-destination", src + "/.", str(tmp)],
                       check=True, capture_output=True)
    (tmp / ".complete").touch()
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    tmp.rename(dest)


def prepare() -> None:
    """Everything BCC needs, exported into this process's environment."""
    ensure_tracefs()
    src = kernel_source()
    if src:
        os.environ["BCC_KERNEL_SOURCE"] = src


if __name__ == "__main__":
    prepare()
