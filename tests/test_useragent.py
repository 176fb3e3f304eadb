"""User-Agent / x-amz-user-agent to a client name and version (aggregator/useragent.py).

Every string here was captured from a real run of the client against moto
(a proxy on loopback logging the two headers), the versions the tests and
tests/setup-test-tools.sh install; the AWS CLI v2 and s3cmd are Debian
bookworm's packages (awscli 2.9.19, s3cmd 2.3.0), minio-py 7.2.20 and
aiobotocore 3.10.0 PyPI's, each installed and run once for this capture.
"""
from __future__ import annotations

import pytest

from s3slower.aggregator.useragent import CLIENTS, OTHER, client_of

OS = "os/linux#6.18.44-fc-v1147"
# (client, User-Agent, x-amz-user-agent) -> (client, version)
REAL = [
    ("boto3", "Boto3/1.44.8 md/Botocore#1.44.8 md/awscrt#0.38.1 ua/2.1 " + OS + " md/arch#x86_64"
     " lang/python#3.11.2 md/pyimpl#CPython m/N,g,E,b,Z cfg/retry-mode#standard Botocore/1.44.8",
     "", ("boto3", "1.44.8")),
    ("botocore", "Botocore/1.44.8 md/awscrt#0.38.1 ua/2.1 " + OS + " md/arch#x86_64"
     " lang/python#3.11.2 md/pyimpl#CPython m/b,N,g,E,Z cfg/retry-mode#standard",
     "", ("botocore", "1.44.8")),
    ("aws-cli v1", "aws-cli/1.46.3 md/Botocore#1.43.62 md/awscrt#0.38.1 ua/2.1 " + OS +
     " md/arch#x86_64 lang/python#3.11.2 md/pyimpl#CPython m/N,g,D,Z,b,C cfg/retry-mode#legacy"
     " botocore/1.43.62", "", ("aws-cli", "1.46.3")),
    ("aws-cli v2", "aws-cli/2.9.19 Python/3.11.2 Linux/6.18.44-fc-v1147 source/x86_64.debian.12"
     " prompt/off command/s3.ls", "", ("aws-cli", "2.9.19")),
    ("curl", "curl/7.88.1", "", ("curl", "7.88.1")),
    ("wget", "Wget/1.21.3", "", ("wget", "1.21.3")),
    ("node SDK v3", "aws-sdk-js/3.1177.0 ua/2.1 " + OS + " lang/js md/nodejs#20.20.2"
     " api/s3#3.1177.0 m/N,Z,b,U,E,e", "aws-sdk-js/3.1177.0", ("aws-sdk-js", "3.1177.0")),
    ("rclone", "rclone/v1.75.2", "", ("rclone", "v1.75.2")),
    # s5cmd 2.3 names only the Go SDK it runs on
    ("s5cmd", "aws-sdk-go/1.44.298 (go1.22.10; linux; amd64)", "", ("aws-sdk-go", "1.44.298")),
    ("pyarrow", "aws-sdk-cpp/1.11.900 ua/2.1 api/S3 os/Linux#6.18.44-fc-v1147 lang/c++#C++11"
     " md/aws-crt#0.44.1 md/arch#x86_64 md/GCC#14.2.1 md/http#curl m/Z,b,P", "",
     ("aws-sdk-cpp", "1.11.900")),
    ("awscrt S3Client", "CRTS3NativeClient/1.5.1 platform/unknown m/Al", "",
     ("aws-crt", "1.5.1")),
    ("minio-py", "MinIO (Linux; x86_64) minio-py/7.2.20", "", ("minio-py", "7.2.20")),
    ("aiobotocore", "aiobotocore/3.10.0 md/Botocore#1.43.117 ua/2.1 " + OS + " md/arch#x86_64"
     " lang/python#3.11.7 md/pyimpl#CPython m/Z,D,N,g,b cfg/retry-mode#legacy botocore/1.43.117",
     "", ("aiobotocore", "3.10.0")),
    # not in the list: other
    ("obstore", "object_store/0.14.2", "", (OTHER, "")),
    ("Java HttpClient", "Java-http-client/17.0.15", "", (OTHER, "")),
    # s3cmd 2.3.0 and http.client (tests/clients/crt_s3_ops.py) send none
    ("no User-Agent", "", "", (OTHER, "")),
]


@pytest.mark.parametrize("ua,amz,want", [r[1:] for r in REAL], ids=[r[0] for r in REAL])
def test_real_user_agents(ua, amz, want):
    assert client_of(ua, amz) == want
    assert want[0] in CLIENTS


def test_the_most_specific_product_wins_in_either_header_and_order():
    boto3 = REAL[0][1]
    assert client_of("Botocore/1.44.8 " + boto3) == ("boto3", "1.44.8")
    assert client_of("", boto3) == ("boto3", "1.44.8")          # in x-amz-user-agent alone
    # a tool that names itself in x-amz-user-agent over the SDK's User-Agent
    assert client_of("aws-sdk-go/1.44.298 (go1.22.10; linux; amd64)", "rclone/v1.75.2") == \
        ("rclone", "v1.75.2")
    assert client_of("curl/7.88.1 CRTS3NativeClient/1.5.1") == ("aws-crt", "1.5.1")


def test_names_are_the_issue_list_and_lower_case():
    assert set(CLIENTS) == {
        "boto3", "botocore", "aws-cli", "aws-sdk-java", "aws-sdk-go", "aws-sdk-go-v2",
        "aws-sdk-js", "aws-sdk-cpp", "aws-crt", "aiobotocore", "minio-py", "minio-go", "rclone",
        "s5cmd", "s3cmd", "duckdb", "curl", "wget", "other"}


def test_odd_values_give_other_and_a_bounded_version():
    assert client_of("curl/") == ("curl", "")
    assert client_of("/1.0 // x/") == (OTHER, "")
    assert client_of("curl/" + "9" * 500)[1] == "9" * 32
    assert client_of("curl/7.88.1\x1b[2J") == ("curl", "7.88.1")
