"""x86-64 functions whose first instructions the kernel cannot uprobe.

Some builds pad instructions with redundant segment prefixes for branch
alignment (e.g. `cs cs cs cs push %r12` at the top of s2n_recv in the AWS
CRT wheel).  The kernel's uprobe instruction decoder refuses an instruction
with four or more legacy prefixes (EINVAL), and a uretprobe must sit on the
first instruction.  For such a function the probes move:
  * entry: to the first acceptable instruction, if every instruction before
    it is a `push` (argument registers and the arguments are intact there);
  * exit: to every RET instruction (the return value is in RAX there),
    provided none of them is itself over-prefixed.
Anything else: None, and the function is not probed (never a wrong probe).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

LEGACY_PREFIXES = frozenset(b"\x26\x2e\x36\x3e\x64\x65\x66\x67\xf0\xf2\xf3")
MAX_PREFIXES = 3            # more and the kernel's decoder gives up
MAX_FUNC_BYTES = 64 * 1024


@dataclass(frozen=True)
class MovedProbes:
    entry: int
    rets: tuple[int, ...]


def prefixes(code: bytes) -> int:
    n = 0
    while n < len(code) and code[n] in LEGACY_PREFIXES:
        n += 1
    return n


def needs_moving(code: bytes) -> bool:
    return prefixes(code[:16]) > MAX_PREFIXES


def move_probes(code: bytes, addr: int) -> Optional[MovedProbes]:
    """code: the whole function's bytes, starting at virtual address addr."""
    from capstone import CS_ARCH_X86, CS_MODE_64, Cs

    if not code or len(code) > MAX_FUNC_BYTES:
        return None
    entry = None
    rets = []
    for at, size, mnemonic, _ops in Cs(CS_ARCH_X86, CS_MODE_64).disasm_lite(code, addr):
        raw = code[at - addr:at - addr + size]
        padded = prefixes(raw) > MAX_PREFIXES
        if entry is None:
            if not padded:
                entry = at
            elif mnemonic != "push":
                return None
        if mnemonic == "ret":
            if padded:
                return None
            rets.append(at)
    if entry is None or not rets:
        return None
    return MovedProbes(entry, tuple(rets))
