"""monitoring/ (SPEC §9, issue 7): the Prometheus rules pass promtool (syntax
and their own unit tests), and the Grafana dashboard loads and queries only
metrics the product exports."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
DASHBOARD = MONITORING / "s3slower-dashboard.json"
PROMTOOL_UNPACKED = Path("/var/cache/s3slower-test/prometheus/usr/bin/promtool")
TIMEOUT_S = 120

# The metric families the product exports, with their types.  This is the one
# list the dashboard and rules are checked against; a live scrape can replace
# it: EXPORTED_METRICS = families_from_exposition(scraped_text).
EXPORTED_METRICS = {
    "s3slower_requests_total": "counter",
    "s3slower_request_errors_total": "counter",
    "s3slower_request_duration_ms": "histogram",
    "s3slower_request_duration_min_ms": "gauge",
    "s3slower_request_duration_max_ms": "gauge",
    "s3slower_request_bytes_total": "counter",
    "s3slower_response_bytes_total": "counter",
    "s3slower_partial_requests_total": "counter",
    "s3slower_incomplete_requests_total": "counter",
    "s3slower_time_to_first_byte_ms": "histogram",
    "s3slower_response_status_total": "counter",
    "s3slower_events_lost_total": "counter",
    "s3slower_tracer_errors_total": "counter",
    "s3slower_skipped_bytes_total": "counter",
    "s3slower_collector_up": "gauge",
    "s3slower_collector_last_heartbeat_timestamp_seconds": "gauge",
    "s3slower_label_overflow_total": "counter",
    "s3slower_series_expired_total": "counter",
    "s3slower_label_values": "gauge",
    "s3slower_multipart_uploads_total": "counter",
    "s3slower_multipart_upload_duration_ms": "histogram",
    "s3slower_request_duration_by_size_ms": "histogram",
    "s3slower_transfer_rate_bytes_per_second": "histogram",
    "s3slower_retries_total": "counter",
    "s3slower_request_failures_total": "counter",
}
# A metric name in PromQL: s3slower_ then name characters, not a recorded
# name (those have colons) nor part of a longer identifier.
METRIC_IN_QUERY = re.compile(r"(?<![A-Za-z0-9_:])(s3slower_[A-Za-z0-9_]+)(?![A-Za-z0-9_:])")


def families_from_exposition(text: str) -> dict[str, str]:
    """{family: type} from Prometheus text exposition (`# TYPE` lines).

    client_python names a counter family without `_total` in its TYPE line;
    the name queries use is the sample name, so `_total` is put back.  Its
    `*_created` timestamp gauges of unlabelled counters are left out."""
    out = {}
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = m.groups()
        if kind == "gauge" and name.endswith("_created"):
            continue
        if kind == "counter" and not name.endswith("_total"):
            name += "_total"
        out[name] = kind
    return out


def sample_names(families: dict[str, str]) -> set[str]:
    """Every series name a scrape of these families can hold."""
    names = set()
    for name, kind in families.items():
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def _promtool() -> str:
    exe = shutil.which("promtool") or (str(PROMTOOL_UNPACKED) if PROMTOOL_UNPACKED.exists() else None)
    if exe is None:
        pytest.skip("promtool not found (tests/setup-deploy-tools.sh unpacks it)")
    return exe


def _queries(node) -> list[str]:
    """Every PromQL string of a dashboard: panel targets and template variables."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "definition") and isinstance(v, str):
                found.append(v)
            elif k == "query" and isinstance(v, str) and v.startswith("label_values("):
                found.append(v)
            else:
                found += _queries(v)
    elif isinstance(node, list):
        for v in node:
            found += _queries(v)
    return found


def test_promtool_check_rules():
    files = sorted(MONITORING.glob("*.rules.yml"))
    assert files
    r = subprocess.run([_promtool(), "check", "rules", *map(str, files)],
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_rule_unit_tests():
    r = subprocess.run([_promtool(), "test", "rules", "s3slower.rules.test.yml"],
                       capture_output=True, text=True, timeout=TIMEOUT_S, cwd=MONITORING)
    assert r.returncode == 0, r.stdout + r.stderr


def test_retries_and_throttles_have_panels_and_an_alert():
    """Issue 15.4: throttles and retries on the dashboard, sustained throttling alerted."""
    import yaml
    text = " ".join(_queries(json.loads(DASHBOARD.read_text())))
    assert 'rate(s3slower_request_failures_total{' in text
    assert 'reason=~"slow_down|too_many_requests"' in text
    assert "rate(s3slower_retries_total{" in text
    groups = yaml.safe_load((MONITORING / "s3slower.rules.yml").read_text())["groups"]
    (alert,) = [r for g in groups for r in g["rules"] if r.get("alert") == "S3slowerThrottled"]
    assert "s3slower_throttles" in alert["expr"] and alert["for"] == "15m"


def test_rules_name_only_exported_metrics():
    text = "\n".join(p.read_text() for p in MONITORING.glob("*.rules.yml"))
    used = set(METRIC_IN_QUERY.findall(text))
    assert used, "no s3slower metric in the rules"
    assert used <= sample_names(EXPORTED_METRICS), used - sample_names(EXPORTED_METRICS)


def test_dashboard_loads_and_queries_only_exported_metrics():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["panels"]
    queries = _queries(dash)
    used = {name for q in queries for name in METRIC_IN_QUERY.findall(q)}
    unknown = used - sample_names(EXPORTED_METRICS)
    assert not unknown, f"dashboard queries metrics the product does not export: {unknown}"
    # what issue 7 asks the dashboard to show
    for needed in ("s3slower_request_duration_ms_bucket", "s3slower_requests_total",
                   "s3slower_request_errors_total", "s3slower_request_bytes_total",
                   "s3slower_response_bytes_total", "s3slower_time_to_first_byte_ms_bucket",
                   "s3slower_events_lost_total", "s3slower_collector_up"):
        assert needed in used, needed
    text = " ".join(queries)
    assert re.search(r"histogram_quantile\(0\.99, sum by \(le, s3_operation\) "
                     r"\(rate\(s3slower_request_duration_ms_bucket", text)
    assert re.search(r"histogram_quantile\(0\.99, sum by \(le, bucket\) "
                     r"\(rate\(s3slower_request_duration_ms_bucket", text)
    assert "sum by (source) (rate(s3slower_events_lost_total" in text


def test_dashboard_panels_do_not_overlap():
    dash = json.loads(DASHBOARD.read_text())
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine


def test_exported_names_are_what_the_exporter_declares():
    """The constant above against the real registry of the aggregator's exporter."""
    from prometheus_client import CollectorRegistry, generate_latest

    from s3slower.aggregator.metrics import Metrics, MetricsSink
    from s3slower.aggregator.multipart_out import MultipartMetrics
    from s3slower.aggregator.throughput import ThroughputMetrics
    from s3slower.aggregator.retries_out import RetryMetrics
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    MetricsSink(metrics, registry)        # as build_outputs wires it
    MultipartMetrics(registry)
    ThroughputMetrics(registry, lambda: None)
    RetryMetrics(registry, metrics)
    declared = families_from_exposition(generate_latest(registry).decode())
    assert declared == EXPORTED_METRICS


FLEET_AGGREGATION = re.compile(
    r"^(time\(\) - |histogram_quantile\([0-9.]+, )?(sum|max|min)( by \(([a-z0-9_, ]*)\))? ?\(")


def test_dashboard_panels_aggregate_across_aggregators():
    """A fleet has several aggregators (docs/scaling.md): every panel sums or
    takes the max/min over them, by labels that never name the aggregator."""
    dash = json.loads(DASHBOARD.read_text())
    targets = [t for p in dash["panels"] for t in p.get("targets", ())]
    assert targets
    for t in targets:
        m = FLEET_AGGREGATION.match(t["expr"])
        assert m, t["expr"]
        assert "instance" not in t["expr"] and "instance" not in t.get("legendFormat", "")
        assert "instance" not in (m.group(4) or "")


def test_rules_aggregate_across_aggregators():
    """No recording rule keeps per-aggregator series of the requests; the
    collector alerts take the max over aggregators."""
    import yaml
    groups = yaml.safe_load((MONITORING / "s3slower.rules.yml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    for r in rules:
        expr = " ".join(r["expr"].split())
        if "s3slower_request" in expr or "s3slower_time_to_first_byte" in expr:
            assert "instance" not in expr, r
        if "s3slower_collector" in expr:
            assert "max by (hostname)" in expr, r
