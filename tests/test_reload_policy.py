"""The reload policy (s3slower.reload): which keys a running tracer takes on.

min_latency_ms is applied by the aggregator at once unless a flag set it (the
flag wins); every other key changed is reported as taking effect after a
restart; the collector follows the file's targets_file unless --targets (or
attach's --pid) pinned it.  Each decision is one warning line.
"""
from __future__ import annotations

import dataclasses
import logging
import signal

import pytest

from s3slower import reload
from s3slower.aggregator.pipeline import Pipeline
from s3slower.aggregator.service import Aggregator
from s3slower.common.config import Config, load_config
from s3slower.common.configkeys import with_key
from s3slower.common.settings import CollectorSettings, Settings
from s3slower.reload import Change, plan


def every_key(obj=Config(), prefix: str = ""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from every_key(value, prefix + f.name + ".")
        else:
            yield prefix + f.name, value


def changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, tuple):
        return value + ("x.lan",)
    return (value or "") + "/other"


@pytest.mark.parametrize("key, value", list(every_key()))
def test_each_key_is_applied_pinned_or_for_a_restart(key, value):
    new = with_key(Config(), key, changed(value))
    live = key in reload.AGGREGATOR_LIVE
    assert plan(Config(), new, frozenset()) == ((key, Change.APPLY if live else Change.RESTART),)
    assert plan(Config(), new, frozenset({key})) == \
        ((key, Change.PINNED if live else Change.RESTART),)
    assert plan(new, new, frozenset()) == ()


def test_the_live_keys_are_min_latency_only():
    assert set(reload.AGGREGATOR_LIVE) == {"min_latency_ms"}


@pytest.fixture
def sighup_restored():
    previous = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, previous)


def aggregator_for(settings: Settings) -> Aggregator:
    return Aggregator(None, Pipeline(), [], min_latency_ms=settings.config.min_latency_ms)


def settings_of(path, pinned=frozenset(), **collector) -> Settings:
    file = load_config(path)
    config = dataclasses.replace(file, min_latency_ms=1.0) if pinned else file
    return Settings(config=config, file=file, pinned=frozenset(pinned), config_path=str(path),
                    collector=CollectorSettings(**collector))


def running(tmp_path, caplog, pinned=frozenset()):
    """An aggregator started with min_latency_ms: 5 in its file (and
    --min-latency 1 when pinned); the file, the aggregator, its reload check."""
    path = tmp_path / "s3slower.yaml"
    path.write_text("min_latency_ms: 5\n")
    s = settings_of(path, pinned=pinned)
    agg = aggregator_for(s)
    check = reload.aggregator_reloader(s, agg)
    caplog.set_level(logging.WARNING, logger="s3slower")
    return path, agg, check


def test_aggregator_takes_min_latency_and_reports_the_rest(tmp_path, caplog, sighup_restored):
    path, agg, check = running(tmp_path, caplog)
    check()
    assert caplog.messages == [] and agg.min_latency_ns == 5_000_000     # nothing changed
    path.write_text("min_latency_ms: 70\nprometheus: {prom_exporter_port: 9100}\n")
    check()
    assert agg.min_latency_ns == 70_000_000
    assert caplog.messages == [
        "configuration reloaded: min_latency_ms = 70.0",
        "configuration: prometheus.prom_exporter_port changed; it takes effect after a restart"]
    caplog.clear()
    signal.raise_signal(signal.SIGHUP)     # re-read although the file is the same
    check()
    assert caplog.messages == ["configuration re-read: no change"]


def test_a_flag_wins_over_a_reloaded_file(tmp_path, caplog, sighup_restored):
    path, agg, check = running(tmp_path, caplog, pinned={"min_latency_ms"})
    path.write_text("min_latency_ms: 70\n")
    check()
    assert agg.min_latency_ns == 1_000_000
    assert caplog.messages == [
        "configuration: min_latency_ms changed but --min-latency on the command line wins"]


def test_a_bad_file_keeps_the_running_configuration(tmp_path, caplog, sighup_restored):
    path, agg, check = running(tmp_path, caplog)
    path.write_text("min_latency_ms: -70\n")
    check()
    assert agg.min_latency_ns == 5_000_000
    assert caplog.messages[0].startswith("configuration not reloaded, keeping the running one: ")
    assert "min_latency_ms: must be a number at least 0" in caplog.messages[0]


def test_no_file_no_reloader(sighup_restored):
    assert reload.aggregator_reloader(Settings(), aggregator_for(Settings())) is None


class Tracker:
    """Where a collector's reloader hands the new selection."""

    def __init__(self):
        self.selections = []

    def reselect(self, selection) -> None:
        self.selections.append(selection)


class Col:
    def __init__(self):
        self.tracker = Tracker()


def targets_yaml(*comms: str) -> str:
    return "targets:\n" + "".join(f"  - {{id: {c}, match: {{type: comm, value: {c}}}}}\n"
                                  for c in comms)


@pytest.mark.parametrize("pinned, use_targets, follows", [
    ((), True, True),                      # run, collector: the file says which targets.yml
    (("targets_file",), True, False),      # --targets given: it stays
    ((), False, False),                    # attach: its --pid only, ever
])
def test_collector_follows_the_files_targets_unless_pinned(tmp_path, pinned, use_targets,
                                                            follows, sighup_restored):
    (tmp_path / "a.yml").write_text(targets_yaml("aaa"))
    (tmp_path / "b.yml").write_text(targets_yaml("bbb"))
    path = tmp_path / "s3slower.yaml"
    path.write_text("targets_file: a.yml\n")
    s = settings_of(path, use_targets=use_targets)
    s = dataclasses.replace(s, pinned=frozenset(pinned))
    check, col = reload.collector_reloader(s), Col()
    check(col)
    assert col.tracker.selections == []                        # nothing changed yet
    path.write_text("targets_file: b.yml\n")
    check(col)
    (sel,) = col.tracker.selections
    expected = ["bbb"] if follows else ["aaa"] if use_targets else []
    assert [t.value for t in sel.targets] == expected
