"""The BPF program as a compiled object: compiled once, loaded at each start.

BCC compiles its C source with clang whenever a `BPF` is made, 1.3-2 s on
the reference machine: most of a start.  Here BCC only compiles.  What the
compile produced (each program's instructions, each map's definition, the
BTF clang wrote for the maps' types) is taken from its module and kept in
the cache directory, under a digest of everything the compile depends on:
the source and its headers, the flags, the kernel, BCC and the kernel
headers it compiled against.  A start that finds its object creates the maps
and loads the programs itself, as a libbpf object is loaded; the verifier
checks every program either way.

The object is code the kernel runs: only a regular file owned by root (the
collector's user) and writable by nobody else is read; anything else, or a
file that does not read as an object, is compiled over.
"""
from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import platform
import stat
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from s3slower.collector import bpfsys

FORMAT = 1
CACHE_DIR = Path("/var/cache/s3slower/bpf")
KEEP = 4                    # objects kept: one per flag set in use, and the last ones
PSEUDO_MAP_FD = 1           # src_reg of a ld_imm64 whose immediate is a map fd
_LD_IMM64 = 0x18
_NO_INNER_MAPS = (12, 13)   # BPF_MAP_TYPE_{ARRAY,HASH}_OF_MAPS: need an inner map


class ObjectError(Exception):
    """The program could not be compiled, or its maps or programs made."""


@dataclass(frozen=True)
class Program:
    insns: bytes                        # map fd immediates zeroed
    maps: tuple[tuple[int, str], ...]   # (instruction index, map name) to fill in


@dataclass(frozen=True)
class Compiled:
    license: str
    kern_version: int
    btf: bytes
    maps: tuple[tuple[bpfsys.MapInfo, str, str], ...]   # info, key and leaf type (BCC JSON)
    programs: dict[str, Program]

    def dumps(self) -> bytes:
        b64 = lambda b: base64.b64encode(b).decode()
        return json.dumps({
            "format": FORMAT, "license": self.license, "kern_version": self.kern_version,
            "btf": b64(self.btf),
            "maps": [[list(vars(info).values()), key, leaf] for info, key, leaf in self.maps],
            "programs": {name: [b64(p.insns), [list(m) for m in p.maps]]
                         for name, p in self.programs.items()},
        }).encode()

    @classmethod
    def loads(cls, data: bytes) -> "Compiled":
        doc = json.loads(data)
        if doc["format"] != FORMAT:
            raise ValueError(f"format {doc['format']}")
        return cls(str(doc["license"]), int(doc["kern_version"]), base64.b64decode(doc["btf"]),
                   tuple((bpfsys.MapInfo(*info), str(key), str(leaf))
                         for info, key, leaf in doc["maps"]),
                   {str(name): Program(base64.b64decode(insns),
                                       tuple((int(i), str(m)) for i, m in maps))
                    for name, (insns, maps) in doc["programs"].items()})


# -- compiling (BCC) ----------------------------------------------------------

def _bcc_lib():
    from bcc import lib  # distribution package python3-bpfcc
    for fn, res, args in (("bpf_num_tables", ctypes.c_size_t, [ctypes.c_void_p]),
                          ("bpf_table_name", ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_size_t]),
                          ("bpf_table_fd_id", ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t]),
                          ("bpf_table_key_desc_id", ctypes.c_char_p,
                           [ctypes.c_void_p, ctypes.c_size_t]),
                          ("bpf_table_leaf_desc_id", ctypes.c_char_p,
                           [ctypes.c_void_p, ctypes.c_size_t])):
        getattr(lib, fn).restype = res
        getattr(lib, fn).argtypes = args
    return lib


def compile_source(src: Path, cflags: list[str]) -> Compiled:
    """Compile with BCC and take what it made; its own maps go with it."""
    lib = _bcc_lib()
    flags = (ctypes.c_char_p * len(cflags))(*[f.encode() for f in cflags])
    mod = lib.bpf_module_create_c(str(src).encode(), 0, flags, len(cflags), True, None)
    if not mod:
        raise ObjectError(f"cannot compile {src} (clang's messages are above)")
    try:
        names, maps, btf_id = {}, [], 0
        for i in range(lib.bpf_num_tables(mod)):
            fd = lib.bpf_table_fd_id(mod, i)
            info = bpfsys.map_info(fd)
            if info.type in _NO_INNER_MAPS:
                raise ObjectError(f"map {info.name}: maps of maps are not supported")
            name = lib.bpf_table_name(mod, i).decode()
            names[fd] = name
            maps.append((_kept(info, name), lib.bpf_table_key_desc_id(mod, i).decode(),
                         lib.bpf_table_leaf_desc_id(mod, i).decode()))
            btf_id = btf_id or info.btf_id
        programs = {}
        for i in range(lib.bpf_num_functions(mod)):
            fn = lib.bpf_function_name(mod, i)
            code = ctypes.string_at(lib.bpf_function_start(mod, fn), lib.bpf_function_size(mod, fn))
            programs[fn.decode()] = _unbind(code, names)
        return Compiled(lib.bpf_module_license(mod).decode(), lib.bpf_module_kern_version(mod),
                        bpfsys.btf_bytes(btf_id) if btf_id else b"", tuple(maps), programs)
    finally:
        lib.bpf_module_destroy(mod)


def _kept(info: bpfsys.MapInfo, name: str) -> bpfsys.MapInfo:
    """What makes the map again: its whole name, not the id of BCC's BTF object."""
    return bpfsys.MapInfo(**{**vars(info), "name": name, "btf_id": 0})


def _unbind(code: bytes, names: dict[int, str]) -> Program:
    """The instructions with each map fd replaced by the map's name."""
    insns = bytearray(code)
    refs = []
    i = 0
    while i < len(insns) // 8:
        if insns[8 * i] == _LD_IMM64:
            if insns[8 * i + 1] >> 4 == PSEUDO_MAP_FD:
                fd = struct.unpack_from("<i", insns, 8 * i + 4)[0]
                refs.append((i, names[fd]))
                struct.pack_into("<i", insns, 8 * i + 4, 0)
            elif insns[8 * i + 1] >> 4:
                raise ObjectError(f"a ld_imm64 of kind {insns[8 * i + 1] >> 4} is not supported")
            i += 2
        else:
            i += 1
    return Program(bytes(insns), tuple(refs))


# -- the cache -------------------------------------------------------------------

def digest(src: Path, cflags: list[str]) -> str:
    """Everything the compiled code depends on."""
    from bcc import __version__ as bcc_version
    h = hashlib.sha256(f"{FORMAT} {bcc_version} {platform.release()} {platform.version()} "
                       f"{' '.join(cflags)}".encode())
    for path in sorted(src.parent.iterdir()):
        if path.suffix in (".c", ".h"):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    headers = os.environ.get("BCC_KERNEL_SOURCE") or f"/lib/modules/{platform.release()}/build"
    try:
        h.update(f"{os.path.realpath(headers)} {os.stat(headers).st_mtime_ns}".encode())
    except OSError:
        h.update(b"no headers")
    return h.hexdigest()[:24]


def cached(src: Path, cflags: list[str], cache_dir: Path = CACHE_DIR,
           on_compile: Callable[[], None] = lambda: None) -> Compiled:
    """The object for (src, cflags): read from cache_dir, or compiled and saved there."""
    path = cache_dir / f"{digest(src, cflags)}.json"
    found = _read_trusted(path)
    if found is not None:
        try:
            return Compiled.loads(found)
        except (ValueError, KeyError, TypeError):
            pass
    on_compile()
    obj = compile_source(src, cflags)
    _save(path, obj.dumps())
    return obj


def _read_trusted(path: Path) -> Optional[bytes]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return None
        return f.read()


def _save(path: Path, data: bytes) -> None:
    """Atomically, mode 0600; an unwritable directory only means compiling next time."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        old = sorted(path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime)[:-KEEP]
        for p in old:
            p.unlink(missing_ok=True)
    except OSError:
        tmp.unlink(missing_ok=True)


# -- loading -------------------------------------------------------------------

class Map:
    """One map, its keys and values as the ctypes types BCC describes."""

    def __init__(self, fd: int, info: bpfsys.MapInfo, key_desc: str, leaf_desc: str):
        from bcc import BPF, lib
        from bcc.utils import get_possible_cpus
        self._lib = lib
        self.fd = fd
        self.info = info
        self.Key = BPF._decode_table_type(json.loads(key_desc))
        self.Leaf = BPF._decode_table_type(json.loads(leaf_desc))
        # per-CPU maps: one value a possible CPU, each rounded up to 8 bytes
        self._cpus = len(get_possible_cpus()) if info.type in bpfsys.MAP_TYPES_PER_CPU else 0

    def __getitem__(self, key):
        if self._cpus:
            raise TypeError(f"{self.info.name} is per CPU: read it with per_cpu()")
        leaf = self.Leaf()
        if self._lib.bpf_lookup_elem(self.fd, ctypes.byref(key), ctypes.byref(leaf)) < 0:
            raise KeyError(key)
        return leaf

    def __setitem__(self, key, leaf) -> None:
        err = self._lib.bpf_update_elem(self.fd, ctypes.byref(key), ctypes.byref(leaf), 0)
        if err < 0:     # libbpf returns -errno
            raise OSError(-err, f"cannot update map {self.info.name}: {os.strerror(-err)}")

    def __delitem__(self, key) -> None:
        if self._lib.bpf_delete_elem(self.fd, ctypes.byref(key)) < 0:
            raise KeyError(key)

    def keys(self) -> list:
        out = []
        key, nxt = None, self.Key()
        while self._lib.bpf_get_next_key(self.fd, ctypes.byref(key) if key is not None else None,
                                         ctypes.byref(nxt)) == 0:
            out.append(nxt)
            key, nxt = nxt, self.Key()
        return out

    def clear(self) -> None:
        for k in self.keys():
            try:
                del self[k]
            except KeyError:
                pass

    def per_cpu(self, key) -> list[int]:
        """A per-CPU map's values of an integer leaf, one a CPU."""
        step = (ctypes.sizeof(self.Leaf) + 7) // 8 * 8
        buf = ctypes.create_string_buffer(step * self._cpus)
        if self._lib.bpf_lookup_elem(self.fd, ctypes.byref(key), buf) < 0:
            raise KeyError(key)
        return [self.Leaf.from_buffer(buf, i * step).value for i in range(self._cpus)]


class Loaded:
    """A compiled object's maps made, its programs loaded when asked for."""

    def __init__(self, obj: Compiled):
        self._obj = obj
        self._fds: list[int] = []
        self._lock = threading.Lock()
        self._progs: dict[tuple[str, int, int], int] = {}
        self.tracepoint_fds: list[int] = []
        self._ringbuf = None
        self._ringbuf_cb = None
        btf = bpfsys.btf_load(obj.btf) if obj.btf else -1
        try:
            self.maps = {}
            for info, key, leaf in obj.maps:
                fd = bpfsys.map_create(info, btf)
                self._fds.append(fd)
                self.maps[info.name] = Map(fd, info, key, leaf)
        except OSError as exc:
            self.close()
            raise ObjectError(str(exc)) from exc
        finally:
            if btf >= 0:
                os.close(btf)       # the maps hold it

    def __getitem__(self, name: str) -> Map:
        return self.maps[name]

    @property
    def program_names(self) -> Iterable[str]:
        return self._obj.programs.keys()

    def load(self, name: str, prog_type: int, attach_type: int = 0) -> int:
        """The program's fd, loaded once for each (type, attach type)."""
        key = (name, prog_type, attach_type)
        with self._lock:
            if key in self._progs:
                return self._progs[key]
        p = self._obj.programs[name]
        insns = bytearray(p.insns)
        for i, m in p.maps:
            struct.pack_into("<i", insns, 8 * i + 4, self.maps[m].fd)
        try:
            fd = bpfsys.prog_load(name, prog_type, bytes(insns), self._obj.license,
                                  self._obj.kern_version, attach_type)
        except OSError as exc:
            raise ObjectError(str(exc)) from exc
        with self._lock:
            self._progs[key] = fd
            self._fds.append(fd)
        return fd

    def attach_tracepoint(self, fd: int, category: str, event: str) -> None:
        from bcc import lib
        perf = lib.bpf_attach_tracepoint(fd, category.encode(), event.encode())
        if perf < 0:
            raise ObjectError(f"cannot attach tracepoint {category}:{event}")
        self.tracepoint_fds.append(perf)

    def open_ring_buffer(self, name: str, callback: Callable[[bytes], None]) -> None:
        """callback(record) for each record, from consume()."""
        from bcc import lib
        from bcc.libbcc import _RINGBUF_CB_TYPE

        def cb(_ctx, data, size):
            callback(ctypes.string_at(data, size))
            return 0
        self._ringbuf_cb = _RINGBUF_CB_TYPE(cb)     # kept alive while the ring is open
        self._ringbuf = lib.bpf_new_ringbuf(self.maps[name].fd, self._ringbuf_cb, None)
        if not self._ringbuf:
            raise ObjectError(f"cannot open ring buffer {name}")

    def consume(self) -> None:
        from bcc import lib
        lib.bpf_consume_ringbuf(self._ringbuf)

    def close(self) -> None:
        """Everything but the tracepoints' fds, which the caller closes (side by side)."""
        if self._ringbuf:
            from bcc import lib
            lib.bpf_free_ringbuf(self._ringbuf)
            self._ringbuf = None
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self._progs.clear()
