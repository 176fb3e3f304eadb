"""Under CI=true a skipped test fails the run (.ci/run relies on it)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CASES = '''
import pytest
def test_ok(): pass
def test_skipped(): pytest.skip("a tool is missing")
@pytest.mark.skip(reason="marked")
def test_marked(): pass
@pytest.fixture
def needs(): pytest.skip("a fixture's tool is missing")
def test_fixture(needs): pass
'''
MODULE_SKIP = 'import pytest\npytest.importorskip("no_such_module_here")\n'


def _pytest(tmp_path: Path, ci: str, source: str) -> subprocess.CompletedProcess:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_cases.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


def test_skips_fail_under_ci(tmp_path):
    r = _pytest(tmp_path, "true", CASES)
    assert r.returncode == 1, r.stdout
    tail = r.stdout.strip().splitlines()[-1]
    assert "1 passed" in tail and "skipped" not in tail, tail
    for name in ("test_skipped", "test_marked", "test_fixture"):
        assert f"{name} - skipped under CI=true, which counts as a failure" in r.stdout, r.stdout


def test_a_module_skipped_whole_fails_under_ci(tmp_path):
    r = _pytest(tmp_path, "true", MODULE_SKIP)
    assert r.returncode != 0 and "counts as a failure" in r.stdout, r.stdout


def test_skips_are_skips_elsewhere(tmp_path):
    r = _pytest(tmp_path, "", CASES)
    assert r.returncode == 0, r.stdout
    assert "1 passed, 3 skipped" in r.stdout.strip().splitlines()[-1], r.stdout
