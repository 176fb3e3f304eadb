"""Defined function symbols of one ELF file, by name, read straight from its tables.

pyelftools parses a symbol table entry by entry (construct), which took
seconds for a large library such as pyarrow's 48 MB libarrow.so while a new
process was already making requests through it.  Here each table is read once
as bytes: a name is looked for in the string table (every place it ends a
string, since linkers share tails: "SSL_write" may be the end of
"PEM_SSL_write"), and the symbol table is scanned for entries naming one of
those places (`array` does the scan in C).  Only little-endian ELF64 is read
this way -- x86-64 and aarch64, what the collector probes; other files go
through pyelftools' own lookup.
"""
from __future__ import annotations

import struct
from array import array
from typing import Iterable, Optional

from elftools.elf.elffile import ELFFile

_SYM64 = struct.Struct("<IBBHQQ")        # st_name, st_info, st_other, st_shndx, st_value, st_size
_SYM64_WORDS = _SYM64.size // 4          # st_name is every 6th 32-bit word
FUNCTION_TYPES = (2, 10)                 # STT_FUNC, STT_GNU_IFUNC
TABLES = {False: (".dynsym", ".dynstr"), True: (".symtab", ".strtab")}


class Symbols:
    """The function symbols of one open ELF file; each table read at most once."""

    def __init__(self, elf: ELFFile):
        self.elf = elf
        self._raw = elf.elfclass == 64 and elf.little_endian and array("I").itemsize == 4
        self._tables: dict[bool, Optional[tuple[bytes, bytes, array]]] = {}

    def functions(self, names: Iterable[str], local: bool) -> dict[str, tuple[int, int]]:
        """name -> (address, size) of each defined function found, from .dynsym
        or, with local=True, from .symtab."""
        names = list(names)
        if not self._raw:
            return _by_pyelftools(self.elf, names, local)
        tables = self._load(local)
        if tables is None:
            return {}
        strings, syms, st_names = tables
        found: dict[str, tuple[int, int]] = {}
        for name in names:
            hit = _first_function(name.encode() + b"\0", strings, syms, st_names)
            if hit:
                found[name] = hit
        return found

    def _load(self, local: bool) -> Optional[tuple[bytes, bytes, array]]:
        if local not in self._tables:
            sym_name, str_name = TABLES[local]
            symtab = self.elf.get_section_by_name(sym_name)
            strtab = self.elf.get_section_by_name(str_name)
            if symtab is None or strtab is None or symtab["sh_entsize"] != _SYM64.size:
                self._tables[local] = None
            else:
                syms = symtab.data()
                st_names = array("I")
                st_names.frombytes(syms[:len(syms) - len(syms) % _SYM64.size])
                self._tables[local] = (strtab.data(), syms, st_names[::_SYM64_WORDS])
        return self._tables[local]


def _first_function(key: bytes, strings: bytes, syms: bytes,
                    st_names: array) -> Optional[tuple[int, int]]:
    at = strings.find(key)
    while at >= 0:
        start = 0
        while True:
            try:
                i = st_names.index(at, start)
            except ValueError:
                break
            _n, info, _o, shndx, value, size = _SYM64.unpack_from(syms, i * _SYM64.size)
            if (info & 0xF) in FUNCTION_TYPES and shndx != 0 and value:
                return value, size
            start = i + 1
        at = strings.find(key, at + 1)
    return None


def _by_pyelftools(elf: ELFFile, names: list[str], local: bool) -> dict[str, tuple[int, int]]:
    table = elf.get_section_by_name(TABLES[local][0])
    found: dict[str, tuple[int, int]] = {}
    if table is None:
        return found
    for name in names:
        for sym in table.get_symbol_by_name(name) or ():
            if sym["st_shndx"] != "SHN_UNDEF" and sym["st_value"] \
                    and sym["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC"):
                found[name] = (sym["st_value"], sym["st_size"])
                break
    return found
