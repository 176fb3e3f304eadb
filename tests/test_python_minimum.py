"""The Python minimum that pyproject and the packages declare is the true one.

vermin (made for exactly this) reads every tracked source file: nothing needs
a newer Python than the declared minimum, and the code does need it (so the
declaration is not looser than the truth either: `@dataclass(slots=True)`
is 3.10)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERMIN = Path(sys.executable).with_name("vermin")


def declared() -> tuple[int, int]:
    text = (ROOT / "pyproject.toml").read_text()
    m = re.search(r'^requires-python = ">=3\.(\d+)"$', text, re.M)
    assert m, "pyproject.toml: requires-python = \">=3.N\""
    return 3, int(m[1])


def sources() -> list[str]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert len(out) > 50
    return out


def _vermin(target: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VERMIN), "--no-tips", "--violations", "--eval-annotations",
                           f"-t={target}-", *sources()], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_nothing_needs_more_than_the_declared_minimum():
    major, minor = declared()
    r = _vermin(f"{major}.{minor}")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_code_needs_the_declared_minimum():
    major, minor = declared()
    r = _vermin(f"{major}.{minor - 1}")
    assert r.returncode != 0 and "3." in r.stdout, r.stdout + r.stderr


def test_packages_declare_the_same_minimum():
    major, minor = declared()
    want = f"{major}.{minor}"
    deb = (ROOT / "packaging/build-package.sh").read_text()
    rpm = (ROOT / "packaging/rpm/s3slower.spec").read_text()
    assert f"python3 (>= {want})" in deb
    assert re.search(rf"^Requires:\s+python3 >= {re.escape(want)}$", rpm, re.M)
