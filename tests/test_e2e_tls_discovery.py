"""TLS code discovery in real files (no BPF needed): named libraries, OpenSSL
inside node, s2n inside the AWS CRT extension, Go crypto/tls in stripped
binaries, and the x86 entry-probe mover."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from s3slower.collector import x86entry
from s3slower.collector.libraries import LibraryFinder

VENV_BIN = Path(sys.executable).parent
# node as set-up installs it (Debian's, or one from elsewhere on PATH)
NODE = os.path.realpath(shutil.which("node") or "/usr/bin/node")


@pytest.fixture(scope="module")
def finder():
    return LibraryFinder()


def test_system_libraries_by_name(finder):
    fams = {lib.family for lib in finder.system_libraries()}
    assert {"openssl", "gnutls", "nss"} <= fams


def test_openssl_inside_node(finder):
    lib = finder.for_file(NODE)
    assert lib and lib.family == "openssl"
    assert {p.fn for p in lib.points} >= {"ssl_write_enter", "ssl_read_return"}


def test_go_stripped_binary_entry_and_rets(finder):
    lib = finder.for_file(str(VENV_BIN / "rclone"))
    assert lib and lib.family == "go"
    enters = [p for p in lib.points if p.fn.endswith("_enter")]
    rets = [p for p in lib.points if p.fn.endswith("_return")]
    assert len(enters) == 2 and len(rets) >= 2
    assert not any(p.ret for p in lib.points), "never a uretprobe on Go code"
    assert finder.cached_files >= 1


def test_s2n_moved_past_padded_entry(finder):
    import _awscrt
    lib = finder.for_file(_awscrt.__file__)
    assert lib and lib.family == "s2n"
    recv = [p for p in lib.points if p.fn.startswith("s2n_recv")]
    assert recv and not any(p.ret for p in recv), "exit probed at RETs, not a uretprobe"


def test_x86_mover():
    padded = b"\x2e\x2e\x2e\x2e\x41\x54" + b"\x53" + b"\x48\x83\xec\x08" + b"\xc3"
    moved = x86entry.move_probes(padded, 0x1000)
    assert moved == x86entry.MovedProbes(0x1006, (0x100b,))
    # a padded instruction that is not a push: refuse rather than probe wrongly
    assert x86entry.move_probes(b"\x2e\x2e\x2e\x2e\x48\x89\xe5\xc3", 0) is None
    assert not x86entry.needs_moving(b"\x55\x48\x89\xe5")


@pytest.mark.parametrize("path", ["node", "rclone"])
def test_points_carry_the_file_offsets_the_kernel_probes(finder, path):
    """The same instruction bytes at each point's address and its offset (Go's
    executable is at a fixed address, so the two differ by the load base)."""
    from elftools.elf.elffile import ELFFile

    from s3slower.collector.elfsyms import Symbols
    path = NODE if path == "node" else str(VENV_BIN / path)
    lib = finder.for_file(path)
    assert lib and lib.points
    with open(path, "rb") as f:
        syms = Symbols(ELFFile(f))
        for pt in lib.points:
            f.seek(pt.offset)
            assert pt.offset >= 0 and f.read(8) == syms.code_at(pt.addr, 8), pt
