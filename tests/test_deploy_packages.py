"""`make deb` and `make rpm` (SPEC §9, issue 7): what the packages declare and
hold.  The boot test (test_deploy_boot.py) installs the .deb for real."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 600
QUERY_TIMEOUT_S = 60
UNITS = ("s3slower.service", "s3slower-collector.service", "s3slower-aggregator.service")
CONFIGS = ("/etc/s3slower/s3slower.yaml", "/etc/s3slower/targets.yml")


def _version() -> str:
    text = (ROOT / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


def _make(target: str) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    r = subprocess.run(["make", "-C", str(ROOT), target], capture_output=True, text=True,
                       timeout=BUILD_TIMEOUT_S)
    assert r.returncode == 0, f"make {target} failed:\n{r.stdout}\n{r.stderr}"


def _run(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def rpm_file() -> Path:
    if shutil.which("dpkg-query") is None:
        pytest.skip("packages are built with Debian's tools; this is not a Debian host")
    _make("rpm")
    path = ROOT / "dist" / f"s3slower-{_version()}-1.noarch.rpm"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def deb_file() -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    _make("deb")
    path = ROOT / "dist" / f"s3slower_{_version()}-1_all.deb"
    assert path.is_file()
    return path


def test_rpm_metadata_lists_dependencies_and_files(rpm_file, capsys):
    info = _run("rpm", "-qip", str(rpm_file))
    requires = _run("rpm", "-qpR", str(rpm_file))
    files = _run("rpm", "-qlp", str(rpm_file))
    configs = _run("rpm", "-qpc", str(rpm_file))
    with capsys.disabled():
        print(f"\n--- rpm -qip {rpm_file.name}\n{info}--- rpm -qpR\n{requires}"
              f"--- rpm -qlp (not under /usr/lib/s3slower/s3slower/)")
        print("".join(f"{f}\n" for f in files.splitlines()
                      if not f.startswith("/usr/lib/s3slower/s3slower/")), end="")
    assert re.search(r"^Name\s*: s3slower$", info, re.M)
    assert re.search(r"^Architecture: noarch$", info, re.M)
    reqs = set(requires.splitlines())
    for dep in ("python3 >= 3.10", "python3-bcc", "(python3-zmq or python3-pyzmq)",
                "python3-msgpack", "python3-prometheus_client", "python3-pyyaml",
                "python3-click", "python3-pyelftools", "python3-capstone", "/usr/bin/kill"):
        assert dep in reqs
    assert not any(r.startswith("bcc") for r in reqs)    # never PyPI's unrelated "bcc"
    listed = set(files.splitlines())
    for unit in UNITS:
        assert f"/usr/lib/systemd/system/{unit}" in listed
    assert {"/usr/bin/s3slower", "/usr/lib/s3slower/s3slower/cli.py",
            "/usr/lib/s3slower/s3slower/bpf/s3slower.bpf.c",
            "/usr/lib/sysusers.d/s3slower.conf", *CONFIGS} <= listed
    assert set(configs.split()) == set(CONFIGS)


def test_rpm_scriptlets_create_the_user_and_respect_presets(rpm_file):
    scripts = _run("rpm", "-qp", "--scripts", str(rpm_file))
    pre = scripts.split("postinstall scriptlet")[0]
    assert "useradd -r -g s3slower" in pre and "groupadd -r s3slower" in pre
    post = scripts.split("postinstall scriptlet")[1].split("preuninstall scriptlet")[0]
    # first installation only, and through presets: an upgrade enables nothing
    assert "[ $1 -eq 1 ]" in post and "preset s3slower.service" in post
    assert " enable " not in scripts


def test_deb_control_conffiles_and_files(deb_file):
    field = lambda name: _run("dpkg-deb", "-f", str(deb_file), name).strip()  # noqa: E731
    assert field("Architecture") == "all"
    depends = {d.strip().split()[0] for d in field("Depends").split(",")}
    assert depends == {"python3", "python3-bpfcc", "python3-zmq", "python3-msgpack",
                       "python3-prometheus-client", "python3-yaml", "python3-click",
                       "python3-pyelftools", "python3-capstone", "procps"}
    assert "linux-headers-amd64" in field("Recommends")
    conffiles = _run("dpkg-deb", "--info", str(deb_file), "conffiles").split()
    assert set(conffiles) == set(CONFIGS)
    listing = _run("dpkg-deb", "-c", str(deb_file))
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for unit in UNITS:
        assert f"/lib/systemd/system/{unit}" in paths
    assert {"/usr/bin/s3slower", "/usr/lib/python3/dist-packages/s3slower/cli.py",
            "/usr/lib/python3/dist-packages/s3slower/aggregator/s3model.json",
            *CONFIGS} <= paths
    assert re.search(r"^-rwxr-xr-x root/root .* \./usr/bin/s3slower$", listing, re.M)


@pytest.mark.parametrize("script", ["postinst", "prerm", "postrm"])
def test_deb_maintainer_scripts_are_valid_sh(script):
    r = subprocess.run(["sh", "-n", str(ROOT / "packaging/debian" / script)],
                       capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    assert r.returncode == 0, r.stderr
