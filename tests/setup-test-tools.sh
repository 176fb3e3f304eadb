#!/usr/bin/env bash
# Tools only the test suite needs (clients of every TLS library, servers).
# Idempotent; the host set-up (packaging/setup-host.sh --test) runs first.
set -euo pipefail
pkgs=(curl openssl)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "test setup: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
