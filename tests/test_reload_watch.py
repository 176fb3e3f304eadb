"""ReloadWatch: a change is reported once; a file named later (a config whose
targets_file now points elsewhere) is watched from then on."""
from __future__ import annotations

import os

from s3slower.reload import ReloadWatch


def test_change_reported_once_and_new_paths_watched(tmp_path):
    config, old, new = (tmp_path / n for n in ("s3slower.yaml", "a.yml", "b.yml"))
    for f in (config, old, new):
        f.write_text("x: 1\n")
    w = ReloadWatch([str(config), str(old)], sighup=False)
    assert not w.due()
    config.write_text("x: 22\n")
    assert w.due() and not w.due()

    w.set_paths([str(config), str(new)])       # the config now names b.yml
    assert not w.due()
    new.write_text("x: 333\n")
    assert w.due() and not w.due()


def test_a_file_that_appears_or_goes_counts_as_a_change(tmp_path):
    missing = tmp_path / "later.yml"
    w = ReloadWatch([str(missing), None], sighup=False)
    assert w.paths == [str(missing)] and not w.due()
    missing.write_text("x: 1\n")
    assert w.due()
    os.unlink(missing)
    assert w.due()
