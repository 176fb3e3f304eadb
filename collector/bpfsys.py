"""The bpf(2) system call, and the few commands s3slower issues itself.

BCC 0.26 has no call for a uprobe_multi link, none that loads a program
from instructions alone, and none that reads a map's or a BTF object's
kernel info; these are the kernel's UAPI (include/uapi/linux/bpf.h), packed
by hand: each command's part of `union bpf_attr` is a fixed prefix of it.
"""
from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass

MAP_CREATE = 0                      # enum bpf_cmd
PROG_LOAD = 5
PROG_GET_FD_BY_ID = 13
OBJ_GET_INFO_BY_FD = 15
BTF_LOAD = 18
BTF_GET_FD_BY_ID = 19
TASK_FD_QUERY = 20
LINK_CREATE = 28
PROG_TYPE_KPROBE = 2                # enum bpf_prog_type: uprobes are kprobe-type programs
PROG_TYPE_TRACEPOINT = 5
MAP_TYPES_PER_CPU = (5, 6, 10)      # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH

_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_ATTR_SIZE = 128                    # >= every prefix packed here

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def supported_machine(machine: str = "") -> bool:
    return (machine or os.uname().machine) in _SYS_BPF


def bpf(cmd: int, attr, what: str) -> int:
    """bpf(cmd, attr): the returned value (an fd for the creating commands);
    OSError naming `what` when the kernel refuses.  attr: a ctypes buffer or
    structure."""
    ret = _libc.syscall(_SYS_BPF[os.uname().machine], cmd, ctypes.byref(attr),
                        ctypes.sizeof(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return int(ret)


def attr() -> ctypes.Array:
    return ctypes.create_string_buffer(_ATTR_SIZE)


def _name(name: str) -> bytes:
    return name.encode()[:15]       # BPF_OBJ_NAME_LEN 16, zero-terminated


# -- maps -------------------------------------------------------------------

# map_type, key_size, value_size, max_entries, map_flags, inner_map_fd,
# numa_node, map_name[16], map_ifindex, btf_fd, btf_key_type_id,
# btf_value_type_id, btf_vmlinux_value_type_id
_MAP_CREATE = struct.Struct("=7I16s5I")
# struct bpf_map_info: type, id, key_size, value_size, max_entries,
# map_flags, name[16], ifindex, btf_vmlinux_value_type_id, netns_dev,
# netns_ino, btf_id, btf_key_type_id, btf_value_type_id
_MAP_INFO = struct.Struct("=6I16sIIQQIII")


@dataclass(frozen=True)
class MapInfo:
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int


def map_info(fd: int) -> MapInfo:
    buf = ctypes.create_string_buffer(_MAP_INFO.size + 16)
    get_info(fd, buf, "map info")
    (mtype, _id, ksize, vsize, maxe, flags, name, _ifi, _vmlinux, _dev, _ino, btf_id,
     ktid, vtid) = _MAP_INFO.unpack_from(buf)
    return MapInfo(mtype, ksize, vsize, maxe, flags, name.rstrip(b"\0").decode(), btf_id,
                   ktid, vtid)


def map_create(m: MapInfo, btf_fd: int) -> int:
    a = attr()
    with_btf = btf_fd >= 0 and (m.btf_key_type_id or m.btf_value_type_id)
    _MAP_CREATE.pack_into(a, 0, m.type, m.key_size, m.value_size, m.max_entries, m.flags, 0, 0,
                          _name(m.name), 0, btf_fd if with_btf else 0,
                          m.btf_key_type_id if with_btf else 0,
                          m.btf_value_type_id if with_btf else 0, 0)
    return bpf(MAP_CREATE, a, f"cannot create map {m.name}")


# -- BTF --------------------------------------------------------------------

_BTF_INFO = struct.Struct("=QII")    # btf, btf_size, id


def btf_bytes(btf_id: int) -> bytes:
    """The raw BTF the kernel holds as object btf_id."""
    a = attr()
    struct.pack_into("=I", a, 0, btf_id)
    fd = bpf(BTF_GET_FD_BY_ID, a, f"cannot open BTF {btf_id}")
    try:
        info = ctypes.create_string_buffer(32)
        get_info(fd, info, "BTF info")
        size = _BTF_INFO.unpack_from(info)[1]
        data = ctypes.create_string_buffer(size)
        info = ctypes.create_string_buffer(32)
        _BTF_INFO.pack_into(info, 0, ctypes.addressof(data), size, 0)
        get_info(fd, info, "BTF data")
        return data.raw
    finally:
        os.close(fd)


def btf_load(data: bytes) -> int:
    buf = ctypes.create_string_buffer(data, len(data))
    a = attr()
    struct.pack_into("=QQII", a, 0, ctypes.addressof(buf), 0, len(data), 0)
    return bpf(BTF_LOAD, a, "cannot load the program's BTF")


def get_info(fd: int, buf, what: str) -> None:
    """OBJ_GET_INFO_BY_FD: the kernel's info of the object fd (a map, BTF or
    program), written into the ctypes buffer buf."""
    a = attr()
    struct.pack_into("=IIQ", a, 0, fd, len(buf), ctypes.addressof(buf))
    bpf(OBJ_GET_INFO_BY_FD, a, f"cannot read {what}")


# -- programs ---------------------------------------------------------------

# prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
# kern_version, prog_flags, prog_name[16], prog_ifindex, expected_attach_type
_PROG_LOAD = struct.Struct("=IIQQIIQII16sII")
VERIFIER_LOG = 1 << 24


def prog_load(name: str, prog_type: int, insns: bytes, license: str, kern_version: int,
              attach_type: int = 0) -> int:
    """Load a program; a refusal raises OSError carrying the verifier's log
    (asked for only then: logging slows the verifier)."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    for log_size in (0, VERIFIER_LOG):
        log = ctypes.create_string_buffer(log_size or 1)
        a = attr()
        _PROG_LOAD.pack_into(a, 0, prog_type, len(insns) // 8, ctypes.addressof(code),
                             ctypes.addressof(lic), 1 if log_size else 0, log_size,
                             ctypes.addressof(log) if log_size else 0, kern_version, 0,
                             _name(name), 0, attach_type)
        try:
            return bpf(PROG_LOAD, a, f"cannot load {name}")
        except OSError as exc:
            if log_size:
                tail = log.value.decode(errors="replace").strip().splitlines()[-3:]
                raise OSError(exc.errno, f"{exc.strerror}: {' / '.join(tail)}") from None


# -- links ------------------------------------------------------------------

# link_create: prog_fd, target_fd, attach_type, flags (u32 each), then the
# uprobe_multi part: path, offsets, ref_ctr_offsets, cookies (u64 pointers),
# cnt, flags, pid (u32).
_LINK_HEAD = struct.Struct("=IIII")
_UPROBE_MULTI = struct.Struct("=QQQQIII")


def uprobe_multi_link(prog_fd: int, attach_type: int, path: str, offsets, flags: int,
                      pid: int) -> int:
    c_path = ctypes.create_string_buffer(os.fsencode(path))
    c_offsets = (ctypes.c_uint64 * len(offsets))(*offsets)
    a = attr()
    _LINK_HEAD.pack_into(a, 0, prog_fd, 0, attach_type, 0)
    _UPROBE_MULTI.pack_into(a, _LINK_HEAD.size, ctypes.addressof(c_path),
                            ctypes.addressof(c_offsets), 0, 0, len(offsets), flags, pid)
    return bpf(LINK_CREATE, a, f"uprobe_multi link on {path}")
