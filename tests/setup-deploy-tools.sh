#!/usr/bin/env bash
# Tools the deployment tests (tests/test_deploy_*.py) need: systemd-analyze,
# systemd-nspawn and debootstrap (boot test), rpm/rpmbuild (make rpm), the
# Python build tools (make deb/rpm) and promtool (and the Prometheus server of
# tests/test_e2e_fleet_failover.py).  Idempotent and quiet.
#
# promtool and the server ship in Debian's `prometheus` package.  Installing that package
# would also start a Prometheus server (its init script runs where systemd is
# not PID 1), so the package is only unpacked, into PROMTOOL_DIR; the tests
# look for promtool on PATH first, then there.
set -euo pipefail

PROMTOOL_DIR=/var/cache/s3slower-test/prometheus
pkgs=(systemd systemd-container debootstrap rpm python3-pip python3-setuptools)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
updated=0
if [ "${#missing[@]}" -gt 0 ]; then
    echo "deploy test setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    updated=1
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v promtool >/dev/null && [ ! -x "$PROMTOOL_DIR/usr/bin/promtool" ]; then
    echo "deploy test setup: unpacking promtool from Debian's prometheus package"
    [ "$updated" = 1 ] || apt-get update -qq
    tmp=$(mktemp -d)
    chmod 0755 "$tmp"          # apt downloads as user _apt
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
    rm -rf "$PROMTOOL_DIR.tmp"
    mkdir -p "$PROMTOOL_DIR.tmp"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$PROMTOOL_DIR.tmp"
    rm -rf "$PROMTOOL_DIR"
    mv "$PROMTOOL_DIR.tmp" "$PROMTOOL_DIR"
fi
