"""What file inspection learned, kept across collector restarts.

Inspecting every file the host's processes map is most of a trace-all
start, and a large library inspected while its process already makes
requests loses them.  The answers (a file's probe points, or "nothing to
probe") are saved under the collector's cache directory, keyed by the file's
identity (device, inode, size, mtime): a restarted collector attaches the
host's known files at once.  The cache names the code that produced it (a
digest of the inspecting modules), so a changed inspector never trusts an
old answer; a cache that does not read as one is ignored, never fatal.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

DEFAULT_PATH = Path("/var/cache/s3slower/libraries.json")
FORMAT = 1
# Entries saved at most: far more distinct executables and libraries than a
# host runs; about 200 bytes each.
MAX_ENTRIES = 8192
_INSPECTORS = ("libraries.py", "elfsyms.py", "golang.py", "x86entry.py")

Ident = tuple[int, int, int, int]
Entry = Optional[tuple[str, tuple[tuple[int, str, bool, int], ...]]]   # family, points


def inspector_digest() -> str:
    h = hashlib.sha256(str(FORMAT).encode())
    here = Path(__file__).parent
    for name in _INSPECTORS:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def load(path: Path, digest: str) -> dict[Ident, Entry]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("inspector") != digest:
            return {}
        out: dict[Ident, Entry] = {}
        for dev, ino, size, mtime, family, points in doc["files"][:MAX_ENTRIES]:
            out[(int(dev), int(ino), int(size), int(mtime))] = None if family is None else (
                str(family), tuple((int(a), str(f), bool(r), int(o)) for a, f, r, o in points))
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save(path: Path, digest: str, entries: dict[Ident, Entry]) -> None:
    """Write atomically (mode 0600); an unwritable directory is no error:
    the next start inspects again."""
    files = [[*ident, *(entry or (None, ()))] for ident, entry in
             list(entries.items())[-MAX_ENTRIES:]]
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"inspector": digest, "files": files}, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
