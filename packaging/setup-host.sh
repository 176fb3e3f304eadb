#!/usr/bin/env bash
# Prepare this Debian host (12 or later) for s3slower, idempotently and quietly:
#   distribution BCC + kernel headers, the s3slower user, and .venv
#   (system Python, --system-site-packages so BCC imports).
# Usage: packaging/setup-host.sh [--test]   (--test adds what the tests need)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# Debian's package names (linux-headers-ARCH, python3-bpfcc) are what this
# installs; other distributions install BCC and kernel headers by hand.
os_id=$( . /etc/os-release 2>/dev/null && echo "${ID:-unknown}")
if [ "$os_id" != debian ] || ! command -v dpkg >/dev/null; then
    echo "setup: this set-up is for Debian (found '$os_id'); elsewhere install BCC's Python" \
         "module, kernel headers and python3-venv by hand, then: python3 -m venv" \
         "--system-site-packages .venv && .venv/bin/pip install -e ." >&2
    exit 1
fi
arch=$(dpkg --print-architecture)
pkgs=(python3-bpfcc python3-venv python3-pip "linux-headers-$arch" procps
      python3-zmq python3-msgpack python3-prometheus-client python3-yaml python3-click python3-pyelftools python3-capstone)
if [ "$want_test" = 1 ]; then
    # gcc + libc6-dev: a test compiles the C event header against its Python mirror
    pkgs+=(curl tmux iproute2 tcpdump gcc libc6-dev git)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The unprivileged half runs as this user (SPEC §2, §9).
if ! getent group s3slower >/dev/null; then groupadd --system s3slower; fi
if ! getent passwd s3slower >/dev/null; then
    useradd --system --gid s3slower --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin s3slower
fi

# .venv from the system Python so the distribution's BCC is importable; one
# made otherwise (without --system-site-packages, or from another Python) is
# made again rather than reused.
if [ -f .venv/pyvenv.cfg ] && ! grep -qx 'include-system-site-packages = true' .venv/pyvenv.cfg; then
    echo "setup: .venv cannot see the system's BCC (made without --system-site-packages); making it again"
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import bcc" 2>/dev/null; then
    echo "setup: .venv/bin/python cannot import bcc (python3-bpfcc); is .venv from /usr/bin/python3?" >&2
    exit 1
fi
extra=""
[ "$want_test" = 1 ] && extra="[test,otlp]"     # the tests run OTLP out too
stamp=".venv/.installed$extra"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing s3slower$extra into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e ".$extra"
    touch "$stamp"
fi

# Kernel headers for BCC (a merged generic tree when the running kernel has
# none), tracefs, and the runtime directory: the same code the collector runs.
.venv/bin/python -m s3slower.collector.hostprep
