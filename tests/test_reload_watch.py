"""ReloadWatch: a change is reported once; a file named later (a config whose
targets_file now points elsewhere) is watched from then on; a closed terminal
(SIGHUP that means stop) is told from a live one."""
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


def test_terminal_hung_up_tells_a_closed_terminal_from_a_live_one_or_none():
    from s3slower.reload import terminal_hung_up
    master, slave = os.openpty()
    r, w = os.pipe()
    try:
        assert not terminal_hung_up([slave, r, w])      # a live terminal, pipes
        os.close(master)                                # the terminal window closes
        master = -1
        assert terminal_hung_up([r, slave])
    finally:
        for fd in (master, slave, r, w):
            if fd >= 0:
                os.close(fd)
