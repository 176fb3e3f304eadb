"""collector/elfsyms.py reads ELF tables itself: its answers are pyelftools'.

Real files of the host (TLS libraries, libc, an interpreter, a file without
any of the names) and a library built here whose names share tails, with a
data object and an undefined reference named like the functions looked for.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from s3slower.collector import elfsyms
from s3slower.collector.libraries import LIBRARY_PROBES
from s3slower.collector.elfsyms import Symbols

LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu")
NAMES = ("libssl.so.3", "libcrypto.so.3", "libgnutls.so.30", "libc.so.6")
HOST_FILES = [p for d in LIB_DIRS for n in NAMES if os.path.exists(p := os.path.join(d, n))] \
    + [os.path.realpath("/usr/bin/python3"), "/usr/bin/true"]
SEARCHED = [name for specs in LIBRARY_PROBES.values() for name, _e, _r in specs]

TAILS_C = r"""
int PEM_SSL_write(void) { return 1; }       /* "SSL_write" may end this string */
int SSL_write(void *s, const void *b, int n) { return n; }
int SSL_read_ex = 3;                         /* an object, not a function */
extern int SSL_read(void *s, void *b, int n);
int call(void) { return SSL_read(0, 0, 0); } /* an undefined reference */
static int __attribute__((noinline, used)) s2n_recv(int x) { return x + 1; }
int s2n_send(int x) { return s2n_recv(x); }
"""


def test_the_host_files_are_there():
    assert len(HOST_FILES) == len(NAMES) + 2, HOST_FILES


@pytest.mark.parametrize("path", HOST_FILES)
@pytest.mark.parametrize("local", [False, True])
def test_functions_are_pyelftools_answers(path, local):
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert Symbols(elf).functions(SEARCHED, local) \
            == elfsyms._by_pyelftools(elf, SEARCHED, local)


@pytest.mark.parametrize("path", HOST_FILES)
def test_sections_and_segments_are_pyelftools_answers(path):
    with open(path, "rb") as f:
        elf = ELFFile(f)
        syms = Symbols(elf)
        want = {s.name: (s["sh_offset"], s["sh_size"], s["sh_entsize"])
                for s in elf.iter_sections()}
        assert syms.sections() == want
        assert syms.loadable() == [(s["p_vaddr"], s["p_filesz"], s["p_offset"])
                                   for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        vaddr, size, off = syms.loadable()[-1]
        f.seek(off + size - 8)
        last = f.read(8)
        assert syms.code_at(vaddr + size - 8, 8) == last
        assert syms.code_at(max(v + s for v, s, _o in syms.loadable()), 8) is None


@pytest.fixture(scope="module")
def tails_lib(tmp_path_factory):
    gcc = shutil.which("gcc")
    assert gcc, "gcc is missing: packaging/setup-host.sh --test installs it"
    d = tmp_path_factory.mktemp("elfsyms")
    (d / "tails.c").write_text(TAILS_C)
    so = d / "libtails.so"
    subprocess.run([gcc, "-O1", "-shared", "-fPIC", "-o", str(so), str(d / "tails.c")],
                   check=True, capture_output=True)
    return so


def test_shared_tails_objects_and_undefined_names(tails_lib):
    with open(tails_lib, "rb") as f:
        elf = ELFFile(f)
        syms = Symbols(elf)
        exported = syms.functions(SEARCHED, local=False)
        assert set(exported) == {"SSL_write", "s2n_send"}, exported
        assert exported == elfsyms._by_pyelftools(elf, SEARCHED, False)
        local = syms.functions(SEARCHED, local=True)
        assert {"SSL_write", "s2n_send", "s2n_recv"} <= set(local), local
        assert "SSL_read" not in local and "SSL_read_ex" not in local, local
        assert local == elfsyms._by_pyelftools(elf, SEARCHED, True)
        table = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
        assert local["SSL_write"][0] == table["SSL_write"]
        assert local["s2n_recv"][0] == table["s2n_recv"]
