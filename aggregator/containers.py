"""Which container a process is in, from its cgroup path and namespace pid (pure).

The collector announces each process's cgroup path (v2, as /proc/PID/cgroup
shows it from the host) and its pid in its own pid namespace
(aggregator/pipeline.py receives them); this module names the container.

Path shapes, the runtime's cgroup driver in brackets:
  containerd / CRI   /kubepods.slice/kubepods-burstable.slice/
                       kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope  [systemd]
                     /kubepods/burstable/pod<uid>/<id>                            [cgroupfs]
                     /system.slice/containerd.service/
                       kubepods-burstable-pod<uid>.slice:cri-containerd:<id>  [mixed drivers]
  CRI-O              .../kubepods-besteffort-pod<uid>.slice/crio-<id>.scope
  Docker             /system.slice/docker-<id>.scope  [systemd]   /docker/<id>  [cgroupfs]
  Podman             /machine.slice/libpod-<id>.scope, rootless
                     /user.slice/user-1000.slice/user@1000.service/user.slice/libpod-<id>.scope,
                     /libpod_parent/libpod-<id>  [cgroupfs],
                     .../libpod-payload-<id>.scope/container  [--cgroups=split]
  nerdctl            /system.slice/nerdctl-<id>.scope
  systemd-nspawn     /machine.slice/machine-<name>.scope (the name systemd-escaped:
                     machine-deb\\x2dtest.scope is the machine deb-test), often with
                     /payload/... below it
where <id> is 64 hex digits.  The innermost component that names a container
wins (docker inside an nspawn machine is that docker container), and anything
below it (a systemd inside the container: .../docker-<id>.scope/init.scope)
is the container's own.  Runtimes' monitor processes (conmon's
libpod-conmon-<id>.scope) are not the container.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

_HEX_ID = r"[0-9a-f]{64}"
# one path component naming a container by id: bare (cgroupfs drivers) or
# prefixed by the runtime, with ".scope" under the systemd driver
_BY_ID = re.compile(rf"(?:(?:docker|cri-containerd|crio|libpod|libpod-payload|nerdctl)-"
                    rf"|.*:cri-containerd:)?({_HEX_ID})(?:\.scope)?\Z")
_MACHINE = re.compile(r"machine-(.+)\.scope\Z")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True)
class Container:
    cgroup: str        # the process's cgroup path
    id: str            # the runtime's container id or machine name; "" when unknown
    pid: int           # the process's pid inside the container's pid namespace

    def json_keys(self) -> dict:
        """The keys a record of a process in this container adds (containers.md)."""
        return {"cgroup": self.cgroup, "container_id": self.id, "container_pid": self.pid}


def container_id(cgroup: str) -> str:
    """The container a cgroup path names (see the shapes above); "" for none."""
    for part in reversed(cgroup.split("/")):
        m = _BY_ID.match(part)
        if m:
            return m.group(1)
        m = _MACHINE.match(part)
        if m:
            return _ESCAPE.sub(lambda e: chr(int(e.group(1), 16)), m.group(1))
    return ""


def from_process(body: Mapping, pid: int) -> Optional[Container]:
    """A PROCESS announcement's container: one when its cgroup names a container
    or it has a pid namespace of its own; None for a host process (or an
    announcement without a cgroup, from a collector older than this)."""
    cgroup = body.get("cgroup")
    if not cgroup:
        return None
    ns_pid = body.get("ns_pid") or pid
    cid = container_id(cgroup)
    if not cid and ns_pid == pid:
        return None
    return Container(cgroup, cid, ns_pid)
