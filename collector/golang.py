"""Go crypto/tls in a (possibly stripped) Go binary: entry and RET addresses.

Go binaries keep their function table in `.gopclntab` even when stripped of
symbols.  This module reads that table (the format of Go >= 1.18, magic
0xfffffff0/0xfffffff1: the register ABI on amd64 is then guaranteed), finds
`crypto/tls.(*Conn).Write` and `.Read`, and disassembles each with capstone to
list its RET instructions: a uretprobe on Go code corrupts the goroutine stack
(Go moves stacks), so exits are probed at every RET instead.

Invariants: pure reading of one file; any inconsistency in the table raises
GoBinaryError (never an IndexError or struct.error); amd64 only, because the
probe bodies read amd64 registers.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Container, Optional

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

GO_TLS_WRITE = b"crypto/tls.(*Conn).Write"
GO_TLS_READ = b"crypto/tls.(*Conn).Read"
PCLNTAB_MAGICS = (0xFFFFFFF0, 0xFFFFFFF1)   # Go 1.18-1.19, Go 1.20+
MAX_FUNC_BYTES = 64 * 1024                  # far above any real Read/Write body


class GoBinaryError(ValueError):
    """The file looks like Go but its function table cannot be read."""


@dataclass(frozen=True)
class GoFunction:
    name: str
    entry: int                  # virtual address of the first instruction
    rets: tuple[int, ...]       # virtual address of every RET instruction


@dataclass(frozen=True)
class GoTLS:
    write: GoFunction
    read: GoFunction


def is_go(section_names: Container[str]) -> bool:
    return ".gopclntab" in section_names


def find_go_tls(f: BinaryIO) -> Optional[GoTLS]:
    """GoTLS for a Go amd64 binary that links crypto/tls, else None."""
    try:
        elf = ELFFile(f)
        if elf["e_machine"] != "EM_X86_64":
            return None
        tab = elf.get_section_by_name(".gopclntab")
        text = elf.get_section_by_name(".text")
        if tab is None or text is None:
            return None
        funcs = _pclntab_functions(tab.data(), text["sh_addr"], (GO_TLS_WRITE, GO_TLS_READ))
    except (ELFError, struct.error) as exc:
        raise GoBinaryError(f"unreadable ELF/pclntab: {exc}") from exc
    if len(funcs) != 2:
        return None                              # no crypto/tls in this program
    out = {}
    for name, (entry, end) in funcs.items():
        out[name] = GoFunction(name.decode(), entry,
                               _ret_addresses(f, text, entry, end))
    return GoTLS(out[GO_TLS_WRITE], out[GO_TLS_READ])


def _pclntab_functions(tab: bytes, text_addr: int,
                       wanted: tuple[bytes, ...]) -> dict[bytes, tuple[int, int]]:
    """name -> (entry, end) virtual addresses for each wanted function."""
    if len(tab) < 8 or struct.unpack_from("<I", tab)[0] not in PCLNTAB_MAGICS:
        raise GoBinaryError("unsupported .gopclntab (Go older than 1.18?)")
    ptr = tab[7]
    if ptr != 8:
        raise GoBinaryError(f"pointer size {ptr} is not amd64")
    (nfunc, _nfiles, text_start, funcname_off, _cu, _file, _pc,
     pcln_off) = struct.unpack_from("<8Q", tab, 8)
    if text_start == 0:            # relocated at run time (PIE): .text start
        text_start = text_addr
    names = {}
    for name in wanted:
        at = tab.find(b"\0" + name + b"\0", funcname_off)
        if at >= 0:
            names[at + 1 - funcname_off] = name
    if not names:
        return {}
    if pcln_off + (2 * nfunc + 1) * 4 > len(tab):
        raise GoBinaryError("function table runs past .gopclntab")
    table = struct.unpack_from(f"<{2 * nfunc + 1}I", tab, pcln_off)
    found: dict[bytes, tuple[int, int]] = {}
    for i in range(nfunc):
        funcoff = table[2 * i + 1]
        name_off = struct.unpack_from("<i", tab, pcln_off + funcoff + 4)[0]
        name = names.get(name_off)
        if name is not None:
            entry, end = table[2 * i], table[2 * i + 2]
            if not 0 < end - entry <= MAX_FUNC_BYTES:
                raise GoBinaryError(f"{name.decode()} has an implausible size")
            found[name] = (text_start + entry, text_start + end)
            if len(found) == len(names):
                break
    return found


def _ret_addresses(f: BinaryIO, text, entry: int, end: int) -> tuple[int, ...]:
    from capstone import CS_ARCH_X86, CS_MODE_64, Cs

    off = entry - text["sh_addr"] + text["sh_offset"]
    f.seek(off)
    code = f.read(end - entry)
    rets = tuple(addr for addr, _size, mnemonic, _ops
                 in Cs(CS_ARCH_X86, CS_MODE_64).disasm_lite(code, entry)
                 if mnemonic == "ret")
    if not rets:
        raise GoBinaryError(f"no RET found in the function at {entry:#x}")
    return rets
