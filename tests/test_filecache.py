"""What file inspection learned survives a restart (collector/filecache.py)."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from s3slower.collector import filecache
from s3slower.collector.libraries import LibraryFinder

LIBSSL = next((p for p in ("/usr/lib/x86_64-linux-gnu/libssl.so.3",
                           "/usr/lib/aarch64-linux-gnu/libssl.so.3") if os.path.exists(p)), None)
NOT_TLS = "/usr/bin/true"


@pytest.fixture
def cache(tmp_path):
    assert LIBSSL, "libssl3 is installed with python3 on Debian"
    return tmp_path / "cache" / "libraries.json"


def _no_inspection(monkeypatch):
    def refuse(self, path):
        raise AssertionError(f"{path} inspected again")
    monkeypatch.setattr(LibraryFinder, "_inspect", refuse)


def test_a_restarted_finder_knows_files_without_inspecting(cache, monkeypatch):
    first = LibraryFinder(cache)
    lib = first.for_file(LIBSSL)
    assert lib and lib.family == "openssl" and first.for_file(NOT_TLS) is None
    first.save()
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    _no_inspection(monkeypatch)
    second = LibraryFinder(cache)
    assert second.for_file(LIBSSL) == lib
    assert second.for_file(NOT_TLS) is None


def test_the_same_file_reached_another_way_carries_that_path(cache, tmp_path, monkeypatch):
    one, two = tmp_path / "one" / "libssl.so.3", tmp_path / "two" / "libssl.so.3"
    one.parent.mkdir()
    two.parent.mkdir()
    shutil.copy2(LIBSSL, one)
    os.link(one, two)                         # one file (inode), two paths
    first = LibraryFinder(cache)
    assert first.for_file(str(one)).path == str(one)
    first.save()
    _no_inspection(monkeypatch)
    again = LibraryFinder(cache)
    assert again.for_file(str(two)).path == str(two)
    assert again.for_file(str(one)).path == str(one)


def test_a_changed_inspector_or_a_broken_file_means_inspecting_again(cache, monkeypatch):
    first = LibraryFinder(cache)
    first.for_file(LIBSSL)
    first.save()
    doc = json.loads(cache.read_text())
    assert doc["inspector"] == filecache.inspector_digest() and doc["files"]
    seen = []
    real_inspect = LibraryFinder._inspect
    monkeypatch.setattr(LibraryFinder, "_inspect",
                        lambda self, path: seen.append(path) or real_inspect(self, path))
    for text in (json.dumps({**doc, "inspector": "older"}), "{not json", '{"files": 5}', ""):
        cache.write_text(text)
        seen.clear()
        assert LibraryFinder(cache).for_file(LIBSSL).family == "openssl"
        assert seen, text


def test_nothing_new_writes_nothing_and_an_unwritable_place_is_no_error(tmp_path):
    finder = LibraryFinder(tmp_path / "c.json")
    finder.save()
    assert not (tmp_path / "c.json").exists()
    blocked = tmp_path / "file"
    blocked.write_text("")
    finder = LibraryFinder(blocked / "c.json")      # a file where a directory should be
    finder.for_file(LIBSSL)
    finder.save()
    assert not any(p.name.startswith(".c.json") for p in tmp_path.iterdir())
