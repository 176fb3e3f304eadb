"""Redaction (SPEC §8, habit 14): one test per rule of aggregator/redact.py."""
from __future__ import annotations

import pytest
from hypothesis import assume, given, settings, strategies as st

from s3slower.aggregator.redact import (
    ALWAYS_MASKED, MASK, PRESIGN_PARAMS, SENSITIVE_HEADERS, is_sensitive_header, redact_target)

SIGV4 = ("/bkt/obj.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256"
         "&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
         "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
         "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE"
         "&X-Amz-Signature=0123456789abcdef")
SECRETS = ("AKIAEXAMPLE", "FwoGZXIvYXdzEXAMPLE", "0123456789abcdef")


# --- headers ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["authorization", "x-amz-security-token", "cookie", "set-cookie"])
def test_spec_named_headers_are_sensitive(name):
    assert name in SENSITIVE_HEADERS
    assert is_sensitive_header(name)


@pytest.mark.parametrize("name", ["Authorization", "X-Amz-Security-Token", "COOKIE", " Set-Cookie "])
def test_header_names_match_in_any_case(name):
    assert is_sensitive_header(name)


@pytest.mark.parametrize("name", ["proxy-authorization", "x-amz-s3session-token",
                                  "x-amz-server-side-encryption-customer-key",
                                  "x-amz-copy-source-server-side-encryption-customer-key"])
def test_other_credential_headers_are_sensitive(name):
    assert is_sensitive_header(name)


@pytest.mark.parametrize("name", ["host", "content-type", "content-length", "x-amz-date",
                                  "x-amz-content-sha256", "x-amz-copy-source", "", None])
def test_ordinary_headers_are_not_sensitive(name):
    assert not is_sensitive_header(name)


def test_header_set_is_lower_case():
    assert all(name == name.lower() for name in SENSITIVE_HEADERS)


# --- presigned queries: every value masked, names kept -----------------------------

def test_sigv4_presigned_query_masks_every_value_and_keeps_names():
    out = redact_target(SIGV4)
    assert out == ("/bkt/obj.bin?X-Amz-Algorithm=REDACTED&X-Amz-Credential=REDACTED"
                   "&X-Amz-Date=REDACTED&X-Amz-Expires=REDACTED&X-Amz-SignedHeaders=REDACTED"
                   "&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED")
    assert not any(secret in out for secret in SECRETS)


def test_sigv2_presigned_query_masks_every_value():
    out = redact_target("/bkt/k?AWSAccessKeyId=AKIAEXAMPLE&Expires=1700000000&Signature=abc%2Bdef%3D")
    assert out == f"/bkt/k?AWSAccessKeyId={MASK}&Expires={MASK}&Signature={MASK}"


@pytest.mark.parametrize("param", sorted(PRESIGN_PARAMS))
def test_each_presign_parameter_alone_triggers_masking(param):
    out = redact_target(f"/b/k?versionId=v123&{param}=secretvalue&uploads")
    assert out == f"/b/k?versionId={MASK}&{param}={MASK}&uploads"


def test_presign_parameter_names_match_in_any_case_and_encoding():
    assert redact_target("/b/k?a=1&SIGNATURE=s") == f"/b/k?a={MASK}&SIGNATURE={MASK}"
    assert redact_target("/b/k?a=1&X%2DAmz%2DAlgorithm=x") == f"/b/k?a={MASK}&X%2DAmz%2DAlgorithm={MASK}"


@pytest.mark.parametrize("target", ["/b/k?X-Amz-Date=20240101T000000Z",
                                    "/b/k?Expires=1700000000", "/b/k?X-Amz-Expires=60",
                                    "/b/k?response-expires=Thu"])
def test_dates_and_expiry_alone_do_not_trigger_masking(target):
    assert redact_target(target) == target


def test_presigned_absolute_form_target():
    out = redact_target("https://bkt.s3.amazonaws.com/k?X-Amz-Signature=abc&part=1")
    assert out == f"https://bkt.s3.amazonaws.com/k?X-Amz-Signature={MASK}&part={MASK}"


# --- always-masked parameters, wherever they appear ----------------------------------

@pytest.mark.parametrize("name", sorted(ALWAYS_MASKED) + ["X-AMZ-SIGNATURE", "X-Amz-Credential"])
def test_always_masked_values_in_any_case(name):
    out = redact_target(f"/b/k?{name}=topsecret")
    assert "topsecret" not in out and out == f"/b/k?{name}={MASK}"


def test_always_masked_inside_an_encoded_url_value():
    nested = "/b?next=https%3A%2F%2Fh%2Fk%3FX-Amz-Signature%3Dtopsecret%26a%3D1"
    assert redact_target(nested) == f"/b?next=https%3A%2F%2Fh%2Fk%3FX-Amz-Signature%3D{MASK}%26a%3D1"
    twice = "/b?n=x%253FX-Amz-Credential%253Dtopsecret%2526y"
    assert "topsecret" not in redact_target(twice)


def test_always_masked_after_a_fragment_mark():
    assert redact_target("/b/k#x-amz-security-token=topsecret") == f"/b/k#x-amz-security-token={MASK}"


# --- everything else is left alone ----------------------------------------------

@pytest.mark.parametrize("target", ["/", "/b/k", "/b?list-type=2&prefix=a%2Fb&continuation-token=xyz",
                                    "/b/k?uploadId=abc&partNumber=3", "/b?delete", "*", "",
                                    "http://127.0.0.1:9000/b/k?versionId=1"])
def test_targets_without_credentials_are_unchanged(target):
    assert redact_target(target) == target


def test_redaction_is_idempotent():
    once = redact_target(SIGV4)
    assert redact_target(once) == once


@settings(max_examples=300, deadline=None)
@given(prefix=st.text(max_size=40), name=st.sampled_from(sorted(ALWAYS_MASKED)),
       secret=st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=12, max_size=30),
       suffix=st.text(alphabet="&=?/%#ab", max_size=20))
def test_fuzz_always_masked_secret_never_survives(prefix, name, secret, suffix):
    assume(secret not in prefix)
    out = redact_target(f"/{prefix}?{name}={secret}&{suffix}")
    assert secret not in out
