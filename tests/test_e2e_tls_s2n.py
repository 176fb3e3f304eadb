"""s2n end to end, as root, against moto over HTTPS, through the AWS Common
Runtime's HTTP client (awscrt from PyPI: s2n compiled into _awscrt.abi3.so,
found by symbol when the extension is dlopen'ed — the kernel reports the
executable mmap and the collector probes the file before its first call).
aws-c-io feeds s2n from its own buffers, so s2n_recv has no nested syscall:
its socket is the one whose ciphertext the thread read just before.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tls_fixtures import (BODY_SIZE, bucket_name, check_sequence, python_client, run_json,
                          sequence, with_timings)

pytestmark = pytest.mark.e2e


def test_s2n_aws_crt(tracer, moto_https):
    awscrt = pytest.importorskip("awscrt", reason="tests/setup-test-tools.sh installs awscrt")
    from s3slower.collector.libraries import LibraryFinder
    import _awscrt
    lib = LibraryFinder().for_file(_awscrt.__file__)
    assert lib is not None and lib.family == "s2n", f"no s2n found in {_awscrt.__file__}"
    u = urlsplit(moto_https.url)
    bucket = bucket_name("s2n")
    out = run_json(python_client("crt_s3_ops.py") + [u.hostname, str(u.port), bucket,
                                                     str(BODY_SIZE), str(moto_https.ca)])
    assert awscrt.__version__
    calls = with_timings(sequence(), out["calls"])
    check_sequence(tracer, out["pid"], bucket, calls, "s2n")
