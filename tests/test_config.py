"""The configuration model: s3slower.yaml and targets.yml (s3slower.common.config).

Every key of the Go tool's README is accepted with its meaning; every kind of
mistake is one line naming the file and the key; no file at all is defaults;
flags win over files through click's default_map.
"""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from s3slower.common.config import (DEFAULT_CONFIG_PATH, DEFAULT_TARGETS_PATH, Config,
                                    ConfigError, LogConfig, OtlpConfig, PrometheusConfig,
                                    ScreenConfig, TransportConfig, changed_keys, default_map, label_keys,
                                    load_config, load_targets, parse_config, parse_targets)
from s3slower.common.targets import ProcInfo, Selection, Target

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "packaging" / "s3slower.yaml"
EXAMPLE_TARGETS = ROOT / "packaging" / "targets.yml"

# The Go README's "Main Configuration" block, verbatim.
GO_README_CONFIG = """\
interval: 5                    # Collection interval (seconds)
min_latency_ms: 0             # Minimum latency to report
debug: false                  # Debug logging

prometheus:
  prom_exporter_host: "::"    # Listen address
  prom_exporter_port: 9000    # Listen port
  buffer_size: 1000           # Sample buffer size

screen:
  table_format: true          # Use table format
  max_url_length: 50          # URL truncation length
"""

# The Go README's "Targets Configuration" block, verbatim.
GO_README_TARGETS = """\
targets:
  - id: aws-cli
    match:
      type: comm              # Match by process name
      value: aws
    mode: openssl
    prom_labels:
      client: aws-cli
      env: production

  - id: boto3
    match:
      type: cmdline_substring # Match by command line
      value: boto3
    mode: openssl

  - id: mc
    match:
      type: exe_basename      # Match by executable name
      value: mc
    mode: openssl
    prom_labels:
      client: minio-client
"""

GO_TARGETS = (
    Target("aws-cli", "comm", "aws", "openssl", {"client": "aws-cli", "env": "production"}),
    Target("boto3", "cmdline_substring", "boto3", "openssl", {}),
    Target("mc", "exe_basename", "mc", "openssl", {"client": "minio-client"}),
)


def write(tmp_path: Path, text: str, name: str = "s3slower.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def config_error(tmp_path: Path, text: str, name: str = "s3slower.yaml") -> str:
    path = write(tmp_path, text, name)
    loader = load_targets if name.startswith("targets") else load_config
    with pytest.raises(ConfigError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(str(path) + ":"), message
    return message


# --------------------------------------------------------------------------
# s3slower.yaml: every reference key, with its meaning

def test_go_readme_config_block_is_accepted(tmp_path):
    # its values are the defaults; buffer_size is kept only to be warned about
    # (deprecated, ignored: `s3slower aggregator` says so in one line)
    go = dataclasses.replace(Config(), prometheus=PrometheusConfig(buffer_size=1000))
    assert load_config(write(tmp_path, GO_README_CONFIG)) == go


@pytest.mark.parametrize("text, attribute, expected", [
    ("interval: 10", "interval", 10.0),
    ("interval: 0.5", "interval", 0.5),
    ("min_latency_ms: 250", "min_latency_ms", 250.0),
    ("min_latency_ms: 1.5", "min_latency_ms", 1.5),
    ("debug: true", "debug", True),
    ("prometheus: {prom_exporter_host: 127.0.0.1}", "prometheus.prom_exporter_host", "127.0.0.1"),
    ("prometheus: {prom_exporter_port: 9100}", "prometheus.prom_exporter_port", 9100),
    ("prometheus: {buffer_size: 5000}", "prometheus.buffer_size", 5000),
    ("prometheus: {enabled: true}", "prometheus.enabled", True),
    ("screen: {table_format: false}", "screen.table_format", False),
    ("screen: {table_format: false}", "output", "simple"),
    ("screen: {max_url_length: 120}", "screen.max_url_length", 120),
    ("screen: {max_url_length: 8}", "screen.max_url_length", 8),
    ("log: {dir: /srv/s3log}", "log.dir", "/srv/s3log"),
    ("log: {max_size_mb: 7}", "log.max_size_mb", 7),
    ("log: {max_backups: 0}", "log.max_backups", 0),
    ("log: {enabled: false}", "log.enabled", False),
    ("output: json", "output", "json"),
    ("output: json", "screen.table_format", False),
    ("output: simple", "output", "simple"),
    ("output: none", "output", "none"),
    ("targets_file: /etc/s3slower/targets.yml", "targets_file", "/etc/s3slower/targets.yml"),
    ("path_style_endpoints: [Minio.LAN:9000, '[::1]', rgw.s3.example.com]",
     "path_style_endpoints", ("minio.lan:9000", "[::1]", "rgw.s3.example.com")),
    ("max_buckets: 50", "max_buckets", 50),
    ("container_label: true", "container_label", True),
    ("multipart_idle_s: 2.5", "multipart_idle_s", 2.5),
    ("client_label: true", "client_label", True),
    ("transport: {endpoint: 'tcp://agg.example.com:5556'}", "transport.endpoint",
     "tcp://agg.example.com:5556"),
    ("transport: {curve_secret_key: /k/c.key_secret}", "transport.curve_secret_key",
     "/k/c.key_secret"),
    ("transport: {curve_server_key: /k/server.key}", "transport.curve_server_key",
     "/k/server.key"),
    ("transport: {allowed_keys_dir: /k/allowed}", "transport.allowed_keys_dir", "/k/allowed"),
    ("otlp: {enabled: true}", "otlp.enabled", True),
    ("otlp: {endpoint: 'https://otel.example.com:4318/prefix'}", "otlp.endpoint",
     "https://otel.example.com:4318/prefix"),
    ("otlp: {protocol: grpc}", "otlp.protocol", "grpc"),
    ("otlp: {protocol: grpc}", "otlp.url", "http://localhost:4317"),
    ("otlp: {endpoint: 'http://[::1]:4318/'}", "otlp.url", "http://[::1]:4318"),
    ("otlp: {spans: false}", "otlp.spans", False),
    ("otlp: {metrics: false}", "otlp.metrics", False),
    ("otlp: {object_key: true}", "otlp.object_key", True),
    ("otlp: {max_queued_spans: 1}", "otlp.max_queued_spans", 1),
    ("otlp: {metrics_interval: 0.5}", "otlp.metrics_interval", 0.5),
    ("transport: {endpoints: ['tcp://a1:5556', 'tcp://a2:5556']}", "transport.endpoints",
     ("tcp://a1:5556", "tcp://a2:5556")),
])
def test_every_key_is_accepted_with_its_meaning(tmp_path, text, attribute, expected):
    value = load_config(write(tmp_path, text + "\n"))
    for part in attribute.split("."):
        value = getattr(value, part)
    assert value == expected


def test_sections_keep_other_defaults(tmp_path):
    c = load_config(write(tmp_path, "prometheus:\n  prom_exporter_port: 9100\n"))
    assert c.prometheus == PrometheusConfig(prom_exporter_port=9100)
    assert c.screen == ScreenConfig() and c.log == LogConfig()
    assert c.transport == TransportConfig()


def test_empty_values_mean_defaults(tmp_path):
    text = "interval:\nprometheus:\nscreen:\n  max_url_length:\nlog:\ntransport:\n"
    assert load_config(write(tmp_path, text)) == Config()


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().interval = 1           # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().screen.max_url_length = 9   # type: ignore[misc]


def test_relative_paths_are_relative_to_the_file(tmp_path):
    text = """\
        targets_file: targets.yml
        log: {dir: logs}
        transport: {curve_secret_key: keys/c.key_secret, curve_server_key: /abs/s.key,
                    allowed_keys_dir: allowed}
        """
    c = load_config(write(tmp_path, text))
    assert c.targets_file == str(tmp_path / "targets.yml")
    assert c.log.dir == str(tmp_path / "logs")
    assert c.transport.curve_secret_key == str(tmp_path / "keys" / "c.key_secret")
    assert c.transport.curve_server_key == "/abs/s.key"
    assert c.transport.allowed_keys_dir == str(tmp_path / "allowed")


def test_parse_config_is_pure_and_keeps_paths_as_given():
    c = parse_config({"targets_file": "t.yml", "log": {"dir": "logs"}}, "<test>")
    assert c.targets_file == "t.yml" and c.log.dir == "logs"


# --------------------------------------------------------------------------
# no file, empty file, example file

def test_no_file_is_defaults(tmp_path):
    assert load_config(None) == Config()
    assert load_config(tmp_path / "absent.yaml", default_path=str(tmp_path / "absent.yaml")) \
        == Config()
    assert parse_config(None, "<none>") == Config()


def test_defaults_are_documented_values():
    c = Config()
    assert (c.interval, c.min_latency_ms, c.debug, c.output) == (5.0, 0.0, False, "table")
    assert c.prometheus == PrometheusConfig(False, "::", 9000, None)
    assert c.screen == ScreenConfig(True, 50)
    assert c.log == LogConfig("/var/log/s3slower", 100, 5, True)
    assert c.transport == TransportConfig(None, None, None, None)
    assert (c.targets_file, c.path_style_endpoints, c.max_buckets) == (None, (), 1000)
    assert DEFAULT_CONFIG_PATH == "/etc/s3slower/s3slower.yaml"
    assert DEFAULT_TARGETS_PATH == "/etc/s3slower/targets.yml"


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_file_is_defaults(tmp_path, text):
    assert load_config(write(tmp_path, text)) == Config()
    assert load_targets(write(tmp_path, text, "targets.yml")) == ()


def test_explicit_missing_file_is_an_error(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"^{path}: no such file$"):
        load_config(path)
    with pytest.raises(ConfigError, match=f"^{path}: no such file$"):
        load_targets(path)


def test_unreadable_files_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path}: cannot read"):
        load_config(tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"debug: \xe9\n")
    with pytest.raises(ConfigError, match=f"^{bad}: cannot read") as info:
        load_config(bad)
    assert "\n" not in str(info.value)


def test_packaging_example_shows_every_key_and_is_the_defaults():
    text = EXAMPLE_CONFIG.read_text()
    names = [f.name for f in dataclasses.fields(Config)]
    for section in (PrometheusConfig, ScreenConfig, LogConfig, TransportConfig, OtlpConfig):
        names += [f.name for f in dataclasses.fields(section)]
    for name in names:
        assert f"{name}:" in text, name
    assert load_config(EXAMPLE_CONFIG) == Config()


# --------------------------------------------------------------------------
# s3slower.yaml: each kind of error is one line with the file and the key

@pytest.mark.parametrize("text, key, rule", [
    # unknown keys, with the known ones listed
    ("intervall: 5", "intervall", "unknown key (did you mean interval?); known keys: interval,"),
    ("prometheus: {port: 9000}", "prometheus.port", "known keys: enabled, prom_exporter_host,"),
    ("screen: {colour: true}", "screen.colour", "known keys: table_format, max_url_length"),
    ("log: {size: 3}", "log.size", "known keys: dir, max_size_mb, max_backups, enabled"),
    ("transport: {bind: 'tcp://*:1'}", "transport.bind", "known keys: endpoint,"),
    ("1: x", "1", "unknown key"),
    # wrong types
    ("interval: fast", "interval", "must be a number greater than 0 and at most 3600, got 'fast'"),
    ("debug: 'true'", "debug", "must be true or false, got 'true'"),
    ("debug: 1", "debug", "must be true or false, got 1"),
    ("prometheus: {enabled: 'yes'}", "prometheus.enabled", "must be true or false"),
    ("screen: {table_format: 0}", "screen.table_format", "must be true or false, got 0"),
    ("log: {enabled: 'no'}", "log.enabled", "must be true or false"),
    ("prometheus: {prom_exporter_port: '9000'}", "prometheus.prom_exporter_port",
     "must be an integer from 1 to 65535, got '9000'"),
    ("prometheus: {prom_exporter_port: true}", "prometheus.prom_exporter_port",
     "must be an integer from 1 to 65535, got true"),
    ("prometheus: {prom_exporter_port: 9000.0}", "prometheus.prom_exporter_port",
     "must be an integer"),
    ("prometheus: {prom_exporter_host: ''}", "prometheus.prom_exporter_host",
     "must be a host name or address"),
    ("prometheus: {prom_exporter_host: [a]}", "prometheus.prom_exporter_host", "got a list"),
    ("prometheus: 9000", "prometheus", "must be a mapping with keys enabled,"),
    ("screen: [1]", "screen", "must be a mapping"),
    ("log: {dir: 5}", "log.dir", "must be a directory path, got 5"),
    ("targets_file: [a, b]", "targets_file", "must be a file path, got a list"),
    ("path_style_endpoints: minio", "path_style_endpoints", "must be a list of host names"),
    ("path_style_endpoints: ['http://minio:9000']", "path_style_endpoints[0]",
     "must be a host name or host:port without scheme or path"),
    ("path_style_endpoints: [minio/x]", "path_style_endpoints[0]", "without scheme or path"),
    ("path_style_endpoints: [5]", "path_style_endpoints[0]", "got 5"),
    ("transport: {endpoint: 'localhost:5556'}", "transport.endpoint",
     "must be a ZeroMQ endpoint tcp://HOST:PORT or ipc://PATH"),
    ("transport: {curve_secret_key: 1}", "transport.curve_secret_key", "must be a file path"),
    ("output: tabel", "output", "must be one of table, simple, json, top, none, got 'tabel'"),
    ("transport: {endpoints: 'tcp://a:1'}", "transport.endpoints",
     "must be a list of ZeroMQ endpoints, got 'tcp://a:1'"),
    ("transport: {endpoints: ['tcp://a:1', 'a:2']}", "transport.endpoints[1]",
     "must be a ZeroMQ endpoint tcp://HOST:PORT or ipc://PATH"),
    ("transport: {endpoints: ['tcp://a:1', 'tcp://a:1']}", "transport.endpoints[1]",
     "tcp://a:1 is listed twice"),
    # out of range
    ("interval: 0", "interval", "must be a number greater than 0"),
    ("interval: -1", "interval", "greater than 0"),
    ("interval: .inf", "interval", "got inf"),
    ("interval: .nan", "interval", "got nan"),
    ("interval: 86400", "interval", "at most 3600"),
    ("min_latency_ms: -0.5", "min_latency_ms", "must be a number at least 0, got -0.5"),
    ("prometheus: {prom_exporter_port: 0}", "prometheus.prom_exporter_port", "from 1 to 65535"),
    ("prometheus: {prom_exporter_port: 65536}", "prometheus.prom_exporter_port",
     "from 1 to 65535, got 65536"),
    ("prometheus: {buffer_size: 0}", "prometheus.buffer_size", "from 1 to 1000000"),
    ("screen: {max_url_length: 7}", "screen.max_url_length", "from 8 to 4096, got 7"),
    ("log: {max_size_mb: 0}", "log.max_size_mb", "must be an integer from 1 to"),
    ("log: {max_backups: -1}", "log.max_backups", "from 0 to 1000"),
    ("max_buckets: 0", "max_buckets", "from 1 to 1000000"),
    ("container_label: 1", "container_label", "true or false"),
    ("otlp: {enabled: 1}", "otlp.enabled", "true or false"),
    ("otlp: {endpoint: 'otel:4318'}", "otlp.endpoint", "an http:// or https:// URL"),
    ("otlp: {endpoint: 'ftp://otel:4318'}", "otlp.endpoint", "got 'ftp://otel:4318'"),
    ("otlp: {endpoint: 'http://otel:99999'}", "otlp.endpoint", "an http:// or https:// URL"),
    ("otlp: {endpoint: 'http://:4318'}", "otlp.endpoint", "an http:// or https:// URL"),
    ("otlp: {protocol: http/json}", "otlp.protocol", "one of http/protobuf, grpc"),
    ("otlp: {max_queued_spans: 0}", "otlp.max_queued_spans", "from 1 to 1000000"),
    ("otlp: {metrics_interval: 0}", "otlp.metrics_interval", "at least 0.1"),
    ("otlp: {enabled: true, spans: false, metrics: false}", "otlp",
     "spans and metrics are both false"),
    ("otlp: {port: 4318}", "otlp.port", "known keys: enabled, endpoint, protocol,"),
    ("multipart_idle_s: 0", "multipart_idle_s", "a number greater than 0"),
    ("multipart_idle_s: 1e9", "multipart_idle_s", "at most 604800"),
    ("multipart_idle_s: soon", "multipart_idle_s", "got 'soon'"),
    ("client_label: yes please", "client_label", "true or false"),
    # contradiction between the Go key and the new one
    ("output: table\nscreen: {table_format: false}", "screen.table_format",
     "is false but output is table"),
    ("output: simple\nscreen: {table_format: true}", "screen.table_format",
     "is true but output is simple"),
])
def test_each_error_is_one_line_with_file_and_key(tmp_path, text, key, rule):
    message = config_error(tmp_path, text + "\n")
    assert f": {key}: " in message, message
    assert rule in message, message


@pytest.mark.parametrize("text", ["[interval, 5]", "just text", "5"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    message = config_error(tmp_path, text + "\n")
    assert ": top level: must be a mapping with keys interval, min_latency_ms," in message


def test_long_values_are_shortened_in_messages(tmp_path):
    message = config_error(tmp_path, f"output: {'x' * 500}\n")
    assert len(message) < 200 + len(str(tmp_path)), message


@pytest.mark.parametrize("text, line, rule", [
    ("debug: false\nprometheus:\n  prom_exporter_port: 9000\n bad: 1\n", 4, "invalid YAML"),
    ("screen:\n\tmax_url_length: 5\n", 2, "invalid YAML"),
    ("interval: [5\n", 2, "invalid YAML"),
    ("debug: true\ninterval: 5\ndebug: false\n", 3, "key 'debug' appears twice"),
    ("screen:\n  max_url_length: 60\n  max_url_length: 70\n", 3, "appears twice"),
])
def test_yaml_syntax_errors_name_the_line(tmp_path, text, line, rule):
    message = config_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 's3slower.yaml'}:{line}:"), message
    assert rule in message, message


def test_yaml_merge_keys_are_not_duplicates():
    from s3slower.common.validate import parse_yaml
    data = parse_yaml("base: &b {max_url_length: 60}\nscreen:\n  <<: *b\n"
                      "  max_url_length: 70\n", "<x>")
    assert data["screen"] == {"max_url_length": 70}


# --------------------------------------------------------------------------
# targets.yml

def test_go_readme_targets_block(tmp_path):
    assert load_targets(write(tmp_path, GO_README_TARGETS, "targets.yml")) == GO_TARGETS


def test_packaging_targets_example():
    targets = load_targets(EXAMPLE_TARGETS)
    assert targets[:3] == GO_TARGETS
    assert targets[3] == Target("warp", "exe_basename", "warp", "go", {"client": "warp"})
    assert label_keys(targets) == ("client", "env")


@pytest.mark.parametrize("proc, target_id", [
    (ProcInfo(10, "aws", "/usr/bin/python3.11", "/usr/bin/python3 /usr/bin/aws s3 ls"), "aws-cli"),
    (ProcInfo(11, "python3", "/usr/bin/python3.11", "python3 -c import boto3"), "boto3"),
    (ProcInfo(12, "mc", "/usr/local/bin/mc", "mc cp a b"), "mc"),
    (ProcInfo(13, "warp", "/opt/warp/warp", "warp get"), "warp"),
    (ProcInfo(14, "curl", "/usr/bin/curl", "curl http://x"), None),
])
def test_example_targets_select_processes(proc, target_id):
    chosen = Selection.build(targets=load_targets(EXAMPLE_TARGETS)).match(proc)
    assert (chosen.id if chosen else None) == target_id


def test_mode_defaults_to_auto_and_labels_to_empty():
    (t,) = parse_targets({"targets": [{"id": "x", "match": {"type": "comm", "value": "x"}}]},
                         "<t>")
    assert t == Target("x", "comm", "x", "auto", {})


def test_no_targets(tmp_path):
    assert load_targets(None) == ()
    missing = tmp_path / "targets.yml"
    assert load_targets(missing, default_path=str(missing)) == ()
    assert load_targets(write(tmp_path, "targets:\n", "targets.yml")) == ()
    assert load_targets(write(tmp_path, "targets: []\n", "targets.yml")) == ()


def _target_yaml(**entry: str) -> str:
    fields = {"id": "t1", "match": "{type: comm, value: aws}"} | entry
    body = "".join(f"    {k}: {v}\n" for k, v in fields.items() if v != "DROP")
    return "targets:\n  - " + body.lstrip()


@pytest.mark.parametrize("text, key, rule", [
    ("target: []\n", "target", "unknown key (did you mean targets?); known keys: targets"),
    ("targets: {id: x}\n", "targets", "must be a list of targets, got a mapping"),
    ("targets: [aws]\n", "targets[0]", "must be a mapping with keys id, match, mode, prom_labels"),
    (_target_yaml(labels="{a: b}"), "targets[0].labels",
     "unknown key (did you mean prom_labels?); known keys: id, match, mode, prom_labels"),
    (_target_yaml(id="DROP"), "targets[0].id", "is required"),
    (_target_yaml(match="DROP"), "targets[0].match", "is required"),
    (_target_yaml(id="''"), "targets[0].id", "must be a non-empty name"),
    (_target_yaml(id="all"), "targets[0].id", "'all' is reserved"),
    (_target_yaml(id="'watch:aws'"), "targets[0].id", "is reserved"),
    (_target_yaml(match="aws"), "targets[0].match", "must be a mapping with keys type, value"),
    (_target_yaml(match="{type: comm}"), "targets[0].match.value", "is required"),
    (_target_yaml(match="{value: aws}"), "targets[0].match.type", "is required"),
    (_target_yaml(match="{type: pid, value: '1'}"), "targets[0].match.type",
     "must be one of comm, exe_basename, cmdline_substring, got 'pid'"),
    (_target_yaml(match="{type: comm, value: aws, regex: true}"), "targets[0].match.regex",
     "unknown key"),
    (_target_yaml(match="{type: comm, value: ''}"), "targets[0].match.value",
     "must be a non-empty string"),
    (_target_yaml(match="{type: comm, value: 5}"), "targets[0].match.value", "got 5"),
    (_target_yaml(match="{type: exe_basename, value: /usr/bin/mc}"), "targets[0].match.value",
     "must be an executable's file name without '/'"),
    (_target_yaml(mode="tls"), "targets[0].mode",
     "must be one of auto, http, openssl, gnutls, nss, go, got 'tls'"),
    (_target_yaml(prom_labels="[a]"), "targets[0].prom_labels",
     "must be a mapping of label names to string values"),
    (_target_yaml(prom_labels="{team-name: x}"), "targets[0].prom_labels.team-name",
     "is not a Prometheus label name"),
    (_target_yaml(prom_labels="{__meta: x}"), "targets[0].prom_labels.__meta",
     "not starting with __"),
    (_target_yaml(prom_labels="{1x: x}"), "targets[0].prom_labels.1x", "is not a Prometheus"),
    (_target_yaml(prom_labels="{bucket: x}"), "targets[0].prom_labels.bucket",
     "collides with a built-in label (hostname, comm, s3_operation, bucket, endpoint"),
    (_target_yaml(prom_labels="{le: x}"), "targets[0].prom_labels.le", "collides"),
    (_target_yaml(prom_labels="{hostname: x}"), "targets[0].prom_labels.hostname", "collides"),
    (_target_yaml(prom_labels="{version: 1.10}"), "targets[0].prom_labels.version",
     "must be a string (quote numbers and booleans"),
    (_target_yaml(prom_labels="{prod: true}"), "targets[0].prom_labels.prod", "got true"),
    ("targets:\n  - {id: a, match: {type: comm, value: a}}\n"
     "  - {id: a, match: {type: comm, value: b}}\n", "targets[1].id",
     "'a' is used by an earlier target; ids must be unique"),
])
def test_each_targets_error_is_one_line_with_file_and_key(tmp_path, text, key, rule):
    message = config_error(tmp_path, text, "targets.yml")
    assert f": {key}: " in message, message
    assert rule in message, message


def test_targets_yaml_syntax_error_names_the_line(tmp_path):
    message = config_error(tmp_path, "targets:\n  - id: a\n   match: x\n", "targets.yml")
    assert message.startswith(f"{tmp_path / 'targets.yml'}:3:"), message


# --------------------------------------------------------------------------
# label_keys

def test_label_keys_is_the_sorted_union():
    targets = (Target("a", "comm", "a", prom_labels={"team": "x", "env": "p"}),
               Target("b", "comm", "b"),
               Target("c", "comm", "c", prom_labels={"env": "q", "client": "c"}))
    assert label_keys(targets) == ("client", "env", "team")
    assert label_keys(()) == ()
    assert label_keys(GO_TARGETS) == ("client", "env")


# --------------------------------------------------------------------------
# default_map: flags win over files

def test_default_map_of_defaults():
    assert default_map(Config()) == {
        "interval": 5.0, "min_latency": 0.0, "debug": False, "output": "table",
        "max_url_length": 50, "prometheus": False, "host": "::", "port": 9000,
        "prom_buffer_size": None, "log_dir": "/var/log/s3slower", "log_max_size": 100,
        "log_max_backups": 5, "no_log": False, "max_buckets": 1000, "container_label": False,
        "client_label": False, "path_style_endpoints": (), "otlp": False, "otlp_endpoint": None,
        "otlp_protocol": "http/protobuf", "otlp_object_key": False,
    }


def test_default_map_carries_every_file_value(tmp_path):
    text = """\
        interval: 2
        min_latency_ms: 20
        debug: true
        output: json
        prometheus: {enabled: true, prom_exporter_host: 0.0.0.0, prom_exporter_port: 9100,
                     buffer_size: 10}
        screen: {max_url_length: 30}
        log: {dir: /srv/log, max_size_mb: 3, max_backups: 2, enabled: false}
        targets_file: /etc/s3slower/targets.yml
        path_style_endpoints: [minio.lan]
        max_buckets: 10
        container_label: true
        otlp: {enabled: true, endpoint: 'http://otel:4317', protocol: grpc, object_key: true}
        client_label: true
        transport: {endpoint: 'tcp://a:5556', curve_secret_key: /k/a.key_secret,
                    curve_server_key: /k/s.key, allowed_keys_dir: /k/ok}
        """
    assert default_map(load_config(write(tmp_path, text))) == {
        "interval": 2.0, "min_latency": 20.0, "debug": True, "output": "json",
        "max_url_length": 30, "prometheus": True, "host": "0.0.0.0", "port": 9100,
        "prom_buffer_size": 10, "log_dir": "/srv/log", "log_max_size": 3,
        "log_max_backups": 2, "no_log": True, "max_buckets": 10, "container_label": True,
        "client_label": True, "path_style_endpoints": ("minio.lan",),
        "targets_file": "/etc/s3slower/targets.yml",
        "curve_secret_key": "/k/a.key_secret", "curve_server_key": "/k/s.key",
        "allowed_keys": "/k/ok", "otlp": True, "otlp_endpoint": "http://otel:4317",
        "otlp_protocol": "grpc", "otlp_object_key": True,
    }


def test_default_map_names_are_the_cli_parameters():
    from s3slower.cli import cli
    core = {"prometheus", "port", "host", "min_latency", "debug", "log_dir", "log_max_size",
            "no_log", "output"}
    for command in ("run", "attach", "aggregator"):
        names = {p.name for p in cli.commands[command].params}
        assert core <= names, (command, core - names)
    assert core <= default_map(Config()).keys()


@click.command()
@click.option("--port", type=int, default=9000)
@click.option("--min-latency", type=float, default=0)
@click.option("--prometheus", is_flag=True)
@click.option("--no-log", is_flag=True)
@click.option("--output", default="table")
def _probe(port, min_latency, prometheus, no_log, output):
    click.echo(f"{port} {min_latency} {prometheus} {no_log} {output}")


@pytest.mark.parametrize("args, shown", [
    ([], "9100 20.0 True True json"),
    (["--port", "9200", "--min-latency", "5", "--output", "simple"], "9200 5.0 True True simple"),
])
def test_flags_win_over_the_file(tmp_path, args, shown):
    text = ("min_latency_ms: 20\noutput: json\nlog: {enabled: false}\n"
            "prometheus: {enabled: true, prom_exporter_port: 9100}\n")
    dm = default_map(load_config(write(tmp_path, text)))
    result = CliRunner().invoke(_probe, args, default_map=dm)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == shown


# --------------------------------------------------------------------------
# changed_keys (reload)

def test_changed_keys():
    old = Config()
    new = parse_config({"min_latency_ms": 5, "prometheus": {"prom_exporter_port": 9100},
                        "output": "json"}, "<x>")
    assert changed_keys(old, new) == ("min_latency_ms", "prometheus.prom_exporter_port",
                                      "screen.table_format", "output")
    assert changed_keys(new, new) == ()
