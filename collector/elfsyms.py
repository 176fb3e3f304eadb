"""Defined function symbols of one ELF file, by name, read straight from its tables.

pyelftools parses a symbol table entry by entry (construct), which took
seconds for a large library such as pyarrow's 48 MB libarrow.so while a new
process was already making requests through it.  Here each table is read once
as bytes: a name is looked for in the string table (every place it ends a
string, since linkers share tails: "SSL_write" may be the end of
"PEM_SSL_write"), and the symbol table is scanned for entries naming one of
those places (`array` does the scan in C).  Names are looked for by the
prefix they share ("SSL_" for OpenSSL's), one pass over a string table per
prefix (~2 ms per 4 MB); most files have none of them, and then their
symbol table is not read at all.  Sections and segments are found from their
header tables alone: pyelftools' lookups build every section first (the GNU
hash table's arrays included, 20 ms of libarrow.so's 24).  Only
little-endian ELF64 is read this way -- x86-64 and aarch64, what the
collector probes; other files go through pyelftools' own lookup.
"""
from __future__ import annotations

import os
import struct
from array import array
from typing import Iterable, Optional

from elftools.elf.elffile import ELFFile

_SYM64 = struct.Struct("<IBBHQQ")        # st_name, st_info, st_other, st_shndx, st_value, st_size
_SYM64_WORDS = _SYM64.size // 4          # st_name is every 6th 32-bit word
# sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign,
# sh_entsize
_SHDR64 = struct.Struct("<IIQQQQIIQQ")
SHN_XINDEX = 0xFFFF
# p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
_PHDR64 = struct.Struct("<IIQQQQQQ")
PT_LOAD = 1
PN_XNUM = 0xFFFF
FUNCTION_TYPES = (2, 10)                 # STT_FUNC, STT_GNU_IFUNC
TABLES = {False: (".dynsym", ".dynstr"), True: (".symtab", ".strtab")}

Section = tuple[int, int, int]           # file offset, size, entry size
Segment = tuple[int, int, int]           # virtual address, file size, file offset


class Symbols:
    """The function symbols of one open ELF file; each table read at most once."""

    def __init__(self, elf: ELFFile):
        self.elf = elf
        self._raw = elf.elfclass == 64 and elf.little_endian and array("I").itemsize == 4
        self._sections: Optional[dict[str, Section]] = None
        self._segments: Optional[list[Segment]] = None
        self._strings: dict[bool, Optional[bytes]] = {}
        self._symbols: dict[bool, tuple[bytes, array]] = {}

    def sections(self) -> dict[str, Section]:
        """name -> (file offset, size, entry size) of each section."""
        if self._sections is None:
            h = self.elf.header
            if self._raw and h["e_shnum"] and h["e_shstrndx"] != SHN_XINDEX \
                    and h["e_shentsize"] == _SHDR64.size:
                self._sections = _section_table(self.elf.stream, h["e_shoff"], h["e_shnum"],
                                                h["e_shstrndx"])
            else:
                self._sections = {s.name: (s["sh_offset"], s["sh_size"], s["sh_entsize"])
                                  for s in self.elf.iter_sections()}
        return self._sections

    def loadable(self) -> list[Segment]:
        """(virtual address, file size, file offset) of each PT_LOAD segment
        (program headers read alone too: pyelftools' make the dynamic
        segment's every section)."""
        if self._segments is None:
            h = self.elf.header
            if self._raw and h["e_phnum"] != PN_XNUM and h["e_phentsize"] == _PHDR64.size:
                self.elf.stream.seek(h["e_phoff"])
                table = self.elf.stream.read(h["e_phnum"] * _PHDR64.size)
                rows = [_PHDR64.unpack_from(table, i * _PHDR64.size)
                        for i in range(len(table) // _PHDR64.size)]
                self._segments = [(vaddr, filesz, off) for kind, _f, off, vaddr, _p, filesz, *_r
                                  in rows if kind == PT_LOAD]
            else:
                self._segments = [(s["p_vaddr"], s["p_filesz"], s["p_offset"])
                                  for s in self.elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        return self._segments

    def code_at(self, addr: int, size: int) -> Optional[bytes]:
        """The file's bytes at a virtual address, or None outside every segment."""
        for vaddr, filesz, off in self.loadable():
            if vaddr <= addr < vaddr + filesz:
                self.elf.stream.seek(addr - vaddr + off)
                return self.elf.stream.read(size)
        return None

    def functions(self, names: Iterable[str], local: bool) -> dict[str, tuple[int, int]]:
        """name -> (address, size) of each defined function found, from .dynsym
        or, with local=True, from .symtab."""
        names = list(names)
        if not self._raw:
            return _by_pyelftools(self.elf, names, local)
        strings = self._load_strings(local)
        places = _places(strings, names) if strings else {}
        if not places:                  # the common case: the table is not even read
            return {}
        syms, st_names = self._load_symbols(local)
        found: dict[str, tuple[int, int]] = {}
        for name, at in places.items():
            hit = _first_function(at, syms, st_names)
            if hit:
                found[name] = hit
        return found

    def _load_strings(self, local: bool) -> Optional[bytes]:
        """The string table of a symbol table this module can read, or None."""
        if local not in self._strings:
            sym_name, str_name = TABLES[local]
            symtab, strtab = self.sections().get(sym_name), self.sections().get(str_name)
            ok = symtab is not None and strtab is not None and symtab[2] == _SYM64.size
            self._strings[local] = self._read(strtab) if ok else None
        return self._strings[local]

    def _load_symbols(self, local: bool) -> tuple[bytes, array]:
        """The symbol table's bytes and every entry's st_name."""
        if local not in self._symbols:
            syms = self._read(self.sections()[TABLES[local][0]])
            st_names = array("I")
            st_names.frombytes(syms[:len(syms) - len(syms) % _SYM64.size])
            self._symbols[local] = (syms, st_names[::_SYM64_WORDS])
        return self._symbols[local]

    def _read(self, section: Section) -> bytes:
        self.elf.stream.seek(section[0])
        return self.elf.stream.read(section[1])


def _section_table(stream, offset: int, count: int, names_index: int) -> dict[str, Section]:
    stream.seek(offset)
    table = stream.read(count * _SHDR64.size)
    headers = [_SHDR64.unpack_from(table, i * _SHDR64.size)
               for i in range(len(table) // _SHDR64.size)]
    if names_index >= len(headers):
        return {}
    _n, _t, _f, _a, names_off, names_size, *_rest = headers[names_index]
    stream.seek(names_off)
    names = stream.read(names_size)
    out: dict[str, Section] = {}
    for name, _type, _flags, _addr, off, size, _link, _info, _align, entsize in headers:
        end = names.find(b"\0", name)
        label = names[name:end if end >= 0 else len(names)].decode("utf-8", "replace")
        out[label] = (off, size, entsize)     # the last of a name, as pyelftools
    return out


def _places(strings: bytes, names: list[str]) -> dict[str, list[int]]:
    """name -> every offset of the string table where a string ends in it, in
    order; one pass per prefix the names share up to their first "_"."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name[:name.find("_") + 1] or name, []).append(name)
    out: dict[str, list[int]] = {}
    for group in groups.values():
        prefix = os.path.commonprefix(group).encode()
        tails = [(name, name.encode()[len(prefix):] + b"\0") for name in group]
        at = strings.find(prefix)
        while at >= 0:
            for name, tail in tails:
                if strings.startswith(tail, at + len(prefix)):
                    out.setdefault(name, []).append(at)
            at = strings.find(prefix, at + 1)
    return out


def _first_function(places: list[int], syms: bytes,
                    st_names: array) -> Optional[tuple[int, int]]:
    for at in places:
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
