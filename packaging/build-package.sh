#!/usr/bin/env bash
# Build an installable package of the working tree into dist/, with Debian
# tools only: dpkg-deb for the .deb, rpmbuild (Debian's `rpm` package) for
# the .rpm.  Installs its own build tools when missing (idempotent, quiet).
#
#   packaging/build-package.sh deb   ->  dist/s3slower_VERSION-1_all.deb
#   packaging/build-package.sh rpm   ->  dist/s3slower-VERSION-1.noarch.rpm
#
# Layout of both packages:
#   /usr/bin/s3slower                      the command (a small launcher)
#   the `s3slower` Python package          .deb: /usr/lib/python3/dist-packages
#                                          .rpm: /usr/lib/s3slower (the launcher
#                                          puts it on sys.path, so one noarch RPM
#                                          serves every Python 3 >= 3.10)
#   units                                  .deb: /lib/systemd/system, .rpm: /usr/lib/systemd/system
#   /etc/s3slower/{s3slower.yaml,targets.yml}   conffiles / %config(noreplace)
#   /usr/lib/sysusers.d/s3slower.conf      the s3slower user and group
#   /usr/share/s3slower/monitoring/        Grafana dashboard, Prometheus rules
#   /usr/share/doc/s3slower/               README
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

fmt=${1:-}
case "$fmt" in deb|rpm) ;; *) echo "usage: $0 deb|rpm" >&2; exit 2 ;; esac

PY=/usr/bin/python3          # the distribution's Python, never a pyenv/venv one
RELEASE=1
DEPS_DEB="python3 (>= 3.10), python3-bpfcc, python3-zmq, python3-msgpack, python3-prometheus-client, python3-yaml, python3-click, python3-pyelftools, python3-capstone, procps"
RECOMMENDS_DEB="linux-headers-amd64 | linux-headers-arm64 | linux-headers-generic"

# -- build tools -------------------------------------------------------------
need=(python3-pip python3-setuptools)
[ "$fmt" = rpm ] && need+=(rpm)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "packaging: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

version=$($PY -c 'import re; print(re.search(r"^__version__ = \"([^\"]+)\"", open("__init__.py").read(), re.M).group(1))')
# A work directory of this run alone; the package reaches dist/ by rename, so a
# concurrent reader sees the old file or the new one, never half of one.
work=build/package/$fmt.$$
trap 'rm -rf "$work"' EXIT
rm -rf "$work"
mkdir -p "$work" dist

# -- the Python package, as pyproject.toml maps it ---------------------------
$PY -m pip wheel --no-deps --no-build-isolation --disable-pip-version-check -q \
    -w "$work/wheel" . >"$work/wheel.log" 2>&1 || { cat "$work/wheel.log" >&2; exit 1; }
wheel=$(ls "$work"/wheel/s3slower-"$version"-*.whl)

root=$work/root
if [ "$fmt" = deb ]; then
    pylib=/usr/lib/python3/dist-packages
    unitdir=/lib/systemd/system
else
    pylib=/usr/lib/s3slower
    unitdir=/usr/lib/systemd/system
fi
mkdir -p "$root$pylib" "$root/usr/bin" "$root$unitdir" "$root/etc/s3slower" \
         "$root/usr/lib/sysusers.d" "$root/usr/share/doc/s3slower" \
         "$root/usr/share/s3slower/monitoring"

$PY - "$wheel" "$root$pylib" "$fmt" <<'EOF'
import pathlib, sys, zipfile
wheel, dest, fmt = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    z.extractall(dest)
for info in dest.glob("s3slower-*.dist-info"):
    (info / "INSTALLER").write_text("dpkg\n" if fmt == "deb" else "rpm\n")
    (info / "RECORD").unlink()          # the package manager owns these files, not pip
EOF

if [ "$fmt" = deb ]; then
    cat >"$root/usr/bin/s3slower" <<'EOF'
#!/usr/bin/python3 -s
"""s3slower command (installed by the s3slower package)."""
import sys

from s3slower.cli import main

sys.exit(main())
EOF
else
    cat >"$root/usr/bin/s3slower" <<'EOF'
#!/usr/bin/python3 -s
"""s3slower command (installed by the s3slower package)."""
import os
import sys

LIB = "/usr/lib/s3slower"
sys.path.insert(0, LIB)
# `s3slower run` starts `python3 -m s3slower aggregator`: it must find it too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (LIB, os.environ.get("PYTHONPATH")) if p)

from s3slower.cli import main  # noqa: E402

sys.exit(main())
EOF
fi

cp systemd/s3slower.service systemd/s3slower-collector.service \
   systemd/s3slower-aggregator.service "$root$unitdir/"
cp packaging/sysusers.conf "$root/usr/lib/sysusers.d/s3slower.conf"
cp README.md "$root/usr/share/doc/s3slower/README.md"
for f in monitoring/*.json monitoring/*.rules.yml; do
    [ -e "$f" ] && cp "$f" "$root/usr/share/s3slower/monitoring/"
done

# Default configuration: the example files, or (only while they do not exist
# yet) a placeholder that means "all defaults".
for f in s3slower.yaml targets.yml; do
    if [ -f "packaging/$f" ]; then
        cp "packaging/$f" "$root/etc/s3slower/$f"
    else
        printf '# /etc/s3slower/%s: empty, every setting at its default.\n' "$f" \
            >"$root/etc/s3slower/$f"
    fi
done

find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
chmod 0755 "$root/usr/bin/s3slower"

# -- .deb --------------------------------------------------------------------
if [ "$fmt" = deb ]; then
    mkdir -p "$root/DEBIAN"
    for s in postinst prerm postrm; do
        install -m 0755 "packaging/debian/$s" "$root/DEBIAN/$s"
    done
    printf '/etc/s3slower/s3slower.yaml\n/etc/s3slower/targets.yml\n' >"$root/DEBIAN/conffiles"
    cat >"$root/usr/share/doc/s3slower/copyright" <<'EOF'
s3slower: eBPF tracer of S3 request latency as the client experiences it.
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
    size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    sed -e "s/@VERSION@/$version-$RELEASE/" -e "s/@SIZE@/$size/" \
        -e "s/@DEPENDS@/$DEPS_DEB/" -e "s/@RECOMMENDS@/$RECOMMENDS_DEB/" \
        packaging/debian/control.in >"$root/DEBIAN/control"
    out=dist/s3slower_${version}-${RELEASE}_all.deb
    dpkg-deb --root-owner-group -Zxz --build "$root" "$work/out.deb" >/dev/null
    mv -f "$work/out.deb" "$out"
    echo "packaging: $out"
    exit 0
fi

# -- .rpm --------------------------------------------------------------------
top=$(pwd)/$work/rpmbuild
mkdir -p "$top"/{BUILD,RPMS,SPECS,SOURCES,BUILDROOT}
rpmbuild -bb --quiet \
    --define "_topdir $top" \
    --define "s3_version $version" \
    --define "s3_release $RELEASE" \
    --define "s3_stage $(pwd)/$root" \
    --define "_unitdir $unitdir" \
    packaging/rpm/s3slower.spec >"$work/rpmbuild.log" 2>&1 || { cat "$work/rpmbuild.log" >&2; exit 1; }
out=dist/s3slower-${version}-${RELEASE}.noarch.rpm
cp "$top/RPMS/noarch/s3slower-${version}-${RELEASE}.noarch.rpm" "$work/out.rpm"
mv -f "$work/out.rpm" "$out"
echo "packaging: $out"
