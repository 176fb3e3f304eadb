"""Settings (s3slower.common.settings): built once per command from
defaults < file < flags, through the commands' real option definitions.

For every key a flag of a command sets: with neither, the default; with the
file, the file's value; with both, the flag's (and the key is pinned against
reloads).  What click hands the command and what the settings say agree for
every parameter.  `run` hands its aggregator child these very settings.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from s3slower import cli
from s3slower.common import settings as st
from s3slower.common.config import Config
from s3slower.common.configkeys import FLAG_KEYS, NEGATED_FLAGS, key_value, with_flags

# parameter -> (file text, value the file gives, flag args, value the flag gives)
CASES = {
    "interval": ("interval: 7", 7.0, ["--interval", "2"], 2.0),
    "min_latency": ("min_latency_ms: 20", 20.0, ["--min-latency", "3"], 3.0),
    "output": ("output: simple", "simple", ["--output", "json"], "json"),
    "max_url_length": ("screen: {max_url_length: 60}", 60, ["--max-url-length", "30"], 30),
    "port": ("prometheus: {prom_exporter_port: 9100}", 9100, ["-p", "9101"], 9101),
    "host": ("prometheus: {prom_exporter_host: 0.0.0.0}", "0.0.0.0",
             ["--host", "127.0.0.1"], "127.0.0.1"),
    "log_dir": ("log: {dir: /file/log}", "/file/log", ["--log-dir", "/flag/log"], "/flag/log"),
    "log_max_size": ("log: {max_size_mb: 7}", 7, ["--log-max-size", "3"], 3),
    "log_max_backups": ("log: {max_backups: 9}", 9, ["--log-max-backups", "1"], 1),
    "max_buckets": ("max_buckets: 22", 22, ["--max-buckets", "11"], 11),
    "path_style_endpoints": ("path_style_endpoints: [file.lan]", ("file.lan",),
                             ["--path-style-endpoint", "flag.lan"], ("flag.lan",)),
    "targets_file": ("targets_file: /file/t.yml", "/file/t.yml",
                     ["--targets", "/flag/t.yml"], "/flag/t.yml"),
    # flags that can only say "on": the file turns them on, or the flag does
    "debug": ("debug: true", True, ["--debug"], True),
    "prometheus": ("prometheus: {enabled: true}", True, ["--prometheus"], True),
    "no_log": ("log: {enabled: false}", False, ["--no-log"], False),
    "container_label": ("container_label: true", True, ["--container-label"], True),
    "otlp": ("otlp: {enabled: true}", True, ["--otlp"], True),
    "otlp_object_key": ("otlp: {object_key: true}", True, ["--otlp-object-key"], True),
    "otlp_endpoint": ("otlp: {endpoint: 'http://file:4318'}", "http://file:4318",
                      ["--otlp-endpoint", "https://flag:4318"], "https://flag:4318"),
    "otlp_protocol": ("otlp: {protocol: grpc}", "grpc", ["--otlp-protocol", "grpc"], "grpc"),
    "client_label": ("client_label: true", True, ["--client-label"], True),
}
KEY_FILES = {   # parameter -> (file key, the path's name): the option wants it to exist
    "curve_secret_key": ("curve_secret_key", "c.key_secret"),
    "curve_server_key": ("curve_server_key", "s.key"),
    "allowed_keys": ("allowed_keys_dir", "allowed"),
}
COMMANDS = ("run", "attach", "aggregator", "collector")


def params_of(command: str) -> set[str]:
    return {p.name for p in cli.cli.commands[command].params}


def settings(command: str, config: Path, args: list[str]) -> tuple[st.Settings, dict]:
    """The command's settings as its body builds them, and click's parameters."""
    base = ["--pid", "1"] if command == "attach" else []
    ctx = cli.cli.commands[command].make_context(command, ["-C", str(config), *base, *args])
    return cli.settings_of(ctx), ctx.params


def key_files(tmp_path: Path, which: str) -> tuple[str, dict[str, str]]:
    """A transport section naming existing files, and flags naming others."""
    lines, flags = [], {}
    for param, (key, name) in KEY_FILES.items():
        for side in ("file", "flag"):
            path = tmp_path / side / name
            path.parent.mkdir(exist_ok=True)
            if name == "allowed":
                path.mkdir(exist_ok=True)
            else:
                path.write_text("x")
            if side == "file":
                lines.append(f"{key}: {path}")
            else:
                flags[param] = str(path)
    return "transport: {" + ", ".join(lines) + "}", flags


@pytest.mark.parametrize("command, param", [(c, p) for c in COMMANDS for p in sorted(CASES)
                                             if p in params_of(c)])
def test_defaults_then_file_then_flag_for_each_key(tmp_path, command, param):
    key = FLAG_KEYS[param]
    text, from_file, flag, from_flag = CASES[param]
    empty, filed = tmp_path / "empty.yaml", tmp_path / "s3slower.yaml"
    empty.write_text("")
    filed.write_text(text + "\n")

    s, _ = settings(command, empty, [])
    assert key_value(s.config, key) == key_value(Config(), key) and key not in s.pinned
    s, _ = settings(command, filed, [])
    assert key_value(s.config, key) == from_file and key not in s.pinned
    assert key_value(s.file, key) == from_file
    s, _ = settings(command, empty, flag)
    assert key_value(s.config, key) == from_flag and key in s.pinned
    if from_file != from_flag:
        s, _ = settings(command, filed, flag)
        assert key_value(s.config, key) == from_flag and key in s.pinned
        assert key_value(s.file, key) == from_file      # what a reload compares with


@pytest.mark.parametrize("command", ["aggregator", "collector"])
def test_key_files_file_then_flag(tmp_path, command):
    transport, flags = key_files(tmp_path, command)
    config = tmp_path / "s3slower.yaml"
    config.write_text(transport + "\n")
    mine = [p for p in KEY_FILES if p in params_of(command)]
    assert len(mine) == 2
    s, _ = settings(command, config, [])
    for p in mine:
        assert key_value(s.config, FLAG_KEYS[p]) == str(tmp_path / "file" / KEY_FILES[p][1])
    args = [a for p in mine for a in ("--" + p.replace("_", "-"), flags[p])]
    s, _ = settings(command, config, args)
    for p in mine:
        assert key_value(s.config, FLAG_KEYS[p]) == flags[p] and FLAG_KEYS[p] in s.pinned


def test_every_flag_of_a_file_key_is_in_the_cases():
    on_commands = set().union(*(params_of(c) for c in COMMANDS))
    assert set(FLAG_KEYS) & on_commands == set(CASES) | set(KEY_FILES)


@pytest.mark.parametrize("command", COMMANDS)
def test_settings_agree_with_what_click_parsed(tmp_path, command):
    """File values for some keys, flags for others: each parameter's value as
    click merged it is the value the settings hold."""
    config = tmp_path / "s3slower.yaml"
    config.write_text("\n".join(CASES[p][0] for p in ("interval", "output", "debug",
                                                          "path_style_endpoints")) + "\n")
    mine = params_of(command)
    args = [a for p in ("min_latency", "port", "no_log", "log_dir") if p in mine
            for a in CASES[p][2]]
    s, params = settings(command, config, args)
    for p in mine & set(FLAG_KEYS):
        value = key_value(s.config, FLAG_KEYS[p])
        assert params[p] == (not value if p in NEGATED_FLAGS else value), p


def test_output_keeps_table_format_in_step():
    assert with_flags(Config(), {"output": "json"}).screen.table_format is False
    assert with_flags(Config(output="json"), {"output": "table"}).screen.table_format is True


def test_each_half_takes_its_own_flags(tmp_path):
    config = tmp_path / "empty.yaml"
    config.write_text("")
    s, _ = settings("collector", config, ["--bind", "ipc:///tmp/x.sock", "--watch", "mc,warp",
                                          "--watch", "rclone", "--pid", "7", "--mode", "http",
                                          "--buffer-mb", "3", "--hostname", "h"])
    assert s.collector == st.CollectorSettings(bind="ipc:///tmp/x.sock", hostname="h",
                                               pids=(7,), watch=("mc,warp", "rclone"),
                                               mode="http", buffer_mb=3)
    assert s.aggregator == st.AggregatorSettings()
    s2, _ = settings("collector", config, ["--connect", "tcp://a:1", "--connect", "tcp://b:1"])
    assert s2.collector.connects == ("tcp://a:1", "tcp://b:1")
    sel = s.selection(None)
    assert sel.pids == {7} and [t.value for t in sel.targets] == ["mc", "warp", "rclone"]
    s, _ = settings("attach", config, ["--mode", "go"])
    assert (s.collector.pids, s.collector.mode, s.collector.use_targets) == ((1,), "go", False)
    s, _ = settings("aggregator", config, ["--connect", "ipc:///a", "--connect", "ipc:///b",
                                           "--user", "nobody", "--exit-on-bye"])
    assert s.aggregator == st.AggregatorSettings(connects=("ipc:///a", "ipc:///b"),
                                                 user="nobody", exit_on_bye=True)


def test_attach_never_selects_by_the_files_targets(tmp_path):
    config = tmp_path / "s3slower.yaml"
    config.write_text("targets_file: t.yml\n")
    s, _ = settings("attach", config, [])
    assert s.config.targets_file == str(tmp_path / "t.yml")   # its aggregator's labels
    assert s.targets_file is None
    s, _ = settings("run", config, [])
    assert s.targets_file == str(tmp_path / "t.yml")


def everything_set() -> st.Settings:
    """Settings with every field away from its default."""
    config = with_flags(Config(), {p: v for p, (_, _, _, v) in CASES.items()})
    config = dataclasses.replace(config, transport=dataclasses.replace(
        config.transport, endpoint="tcp://a:1", curve_secret_key="/k"))
    return st.Settings(
        config=config, file=Config(min_latency_ms=9.5), pinned=frozenset({"a", "b.c"}),
        config_path="/etc/x.yaml",
        collector=st.CollectorSettings("ipc:///b", ("tcp://c:1", "tcp://d:1"), "h", True, (1, 2), ("mc",),
                                       "go", False, 10, 20, "/r", 4),
        aggregator=st.AggregatorSettings(("ipc:///x",), ("tcp://*:1",), True, "u", True,
                                         "/replay", True, 42))


def test_json_round_trip_keeps_every_field():
    s = everything_set()
    for cls, obj in ((st.Settings, s), (st.CollectorSettings, s.collector),
                     (st.AggregatorSettings, s.aggregator)):
        assert all(getattr(obj, f.name) != f.default for f in dataclasses.fields(cls)
                   if f.default is not dataclasses.MISSING), cls
    assert st.from_json(st.to_json(s)) == s
    assert st.from_json(st.to_json(st.Settings())) == st.Settings()


def test_the_aggregator_child_takes_its_parents_settings_and_reads_no_file(tmp_path):
    s = everything_set()
    ctx = cli.cli.commands["aggregator"].make_context(
        "aggregator", ["--settings", st.to_json(s)])
    assert ctx.meta["settings"] == s and "config" not in ctx.meta


def test_run_hands_its_child_absolute_paths(tmp_path, monkeypatch):
    """The child works in /: flags' relative paths are taken from where run started."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yml").write_text("targets: []\n")
    (tmp_path / "empty.yaml").write_text("")
    s, _ = settings("run", Path("empty.yaml"), ["--targets", "t.yml", "--log-dir", "logs"])
    assert (s.config.targets_file, s.config.log.dir, s.config_path) == \
        ("t.yml", "logs", "empty.yaml")                     # this process: as given
    a = s.absolute(str(tmp_path))
    assert (a.config.targets_file, a.config.log.dir, a.config_path) == \
        (str(tmp_path / "t.yml"), str(tmp_path / "logs"), str(tmp_path / "empty.yaml"))
    assert a.absolute("/elsewhere") == a and a.collector == s.collector
    assert st.Settings().absolute("/x") == st.Settings()


def test_run_hands_its_child_its_settings_through_the_real_command_line(tmp_path):
    """What run starts its aggregator child with, parsed by the aggregator
    command: run's settings, paths absolute, the child's own options put in."""
    from s3slower import launch
    config = tmp_path / "s3slower.yaml"
    config.write_text("min_latency_ms: 20\nlog: {dir: logs}\n")
    s, _ = settings("run", config, ["--min-latency", "3", "--output", "simple", "--pid", "9"])
    argv = launch.child_command(s, "ipc:///run/x.sock", 4321, "/somewhere", "nobody")
    assert argv[1:4] == ["-m", "s3slower", "aggregator"]
    ctx = cli.cli.commands["aggregator"].make_context("aggregator", argv[4:])
    child = ctx.meta["settings"]
    assert child.aggregator == st.AggregatorSettings(
        connects=("ipc:///run/x.sock",), exit_on_bye=True, parent_pid=4321, user="nobody")
    assert (child.config.min_latency_ms, child.file.min_latency_ms) == (3.0, 20.0)
    assert child.config.output == "simple" and child.pinned == s.pinned
    assert child.config.log.dir == str(tmp_path / "logs")        # the file's: absolute already
    assert child.config_path == str(config) and child.collector == s.collector


def _collector_says(tmp_path, text: str, args: list[str]) -> str:
    import os
    import subprocess
    import sys
    config = tmp_path / "s3slower.yaml"
    config.write_text(text)
    r = subprocess.run([sys.executable, "-m", "s3slower", "collector", "-C", str(config),
                        *args], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(Path(cli.__file__).parent.parent)))
    assert r.returncode != 0, r.stderr
    return r.stderr.splitlines()[-1]


def test_the_collector_connects_to_the_files_endpoints_unless_told(tmp_path):
    text = "transport: {endpoint: 'tcp://127.0.0.1:9', endpoints: ['tcp://127.0.0.1:7']}\n"
    assert "tcp://127.0.0.1:7 is a network endpoint" in _collector_says(tmp_path, text, [])
    err = _collector_says(tmp_path, text, ["--connect", "tcp://127.0.0.1:8"])
    assert "tcp://127.0.0.1:8 is a network endpoint" in err


def test_an_aggregator_given_twice_is_one_clear_error(tmp_path):
    err = _collector_says(tmp_path, "", ["--connect", "tcp://127.0.0.1:8", "--connect",
                                         "tcp://127.0.0.1:8", "--insecure"])
    assert err == "Error: an aggregator endpoint is given twice to --connect"
