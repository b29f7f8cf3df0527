"""SigV4 verification against requests signed by botocore's own SigV4Auth."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from engine.server.sigv4 import AuthError, SigV4Verifier

CREDENTIALS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "local": "local"}
BODY = b'{"TableName": "orders"}'


def signed(
    body: bytes = BODY,
    *,
    access_key: str = "AKIDEXAMPLE",
    secret: str | None = None,
    when: dt.datetime | None = None,
    url: str = "http://127.0.0.1:8000/",
    region: str = "us-east-1",
    service: str = "dynamodb",
    extra_headers: dict | None = None,
):
    """(method, path, query, header pairs, body) as a real botocore client sends them."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.DescribeTable",
            **(extra_headers or {}),
        },
    )
    credentials = Credentials(
        access_key, secret if secret is not None else CREDENTIALS.get(access_key, "x")
    )
    if when is None:
        SigV4Auth(credentials, service, region).add_auth(request)
    else:
        # botocore reads the clock through this one function: sign as of ``when``.
        with mock.patch(
            "botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)
        ):
            SigV4Auth(credentials, service, region).add_auth(request)
    prepared = request.prepare()
    split = prepared.url.split("?", 1)
    path = "/" + split[0].split("/", 3)[3] if split[0].count("/") >= 3 else "/"
    query = split[1] if len(split) > 1 else ""
    headers = list(prepared.headers.items())
    headers.append(("host", "127.0.0.1:8000"))
    return "POST", path, query, headers, prepared.body if isinstance(prepared.body, bytes) else body


def verify(request, **options):
    method, path, query, headers, body = request
    return SigV4Verifier(CREDENTIALS, **options).verify(method, path, query, headers, body)


def code_of(request, **options) -> str:
    with pytest.raises(AuthError) as caught:
        verify(request, **options)
    assert caught.value.http_status == 400
    return caught.value.code


def test_valid_signature_accepted():
    assert verify(signed()) == "AKIDEXAMPLE"
    assert verify(signed(access_key="local")) == "local"


def test_valid_with_path_and_query():
    request = signed(url="http://127.0.0.1:8000/some%20path/./x?b=2&a=1&a=0&empty=")
    assert verify(request) == "AKIDEXAMPLE"


def test_repeated_and_spaced_headers_are_canonicalised():
    request = signed(extra_headers={"X-Custom": "  a   b  "})
    method, path, query, headers, body = request
    assert verify((method, path, query, headers, body)) == "AKIDEXAMPLE"


def test_unsigned_request_is_missing_token():
    method, path, query, headers, body = signed()
    headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
    assert code_of((method, path, query, headers, body)) == "MissingAuthenticationTokenException"


def test_unknown_access_key():
    assert code_of(signed(access_key="NOBODY", secret="x")) == "UnrecognizedClientException"


def test_wrong_secret():
    assert code_of(signed(secret="not-the-secret")) == "InvalidSignatureException"


def test_tampered_body():
    method, path, query, headers, _ = signed()
    assert (
        code_of((method, path, query, headers, b'{"TableName": "other"}'))
        == "InvalidSignatureException"
    )


def test_tampered_signed_header():
    method, path, query, headers, body = signed()
    headers = [
        (k, "DynamoDB_20120810.DeleteTable" if k.lower() == "x-amz-target" else v)
        for k, v in headers
    ]
    assert code_of((method, path, query, headers, body)) == "InvalidSignatureException"


def test_expired_signature():
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)
    with pytest.raises(AuthError) as caught:
        verify(signed(when=old))
    assert caught.value.code == "InvalidSignatureException"
    assert caught.value.message.startswith("Signature expired:")


def test_future_signature():
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=20)
    with pytest.raises(AuthError, match="Signature not yet current") as caught:
        verify(signed(when=future))
    assert caught.value.code == "InvalidSignatureException"


def test_small_clock_skew_accepted():
    slightly_old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)
    assert verify(signed(when=slightly_old)) == "AKIDEXAMPLE"


def test_wrong_service_and_region():
    assert code_of(signed(service="s3")) == "InvalidSignatureException"
    # The server's region is enforced by default (us-east-1) and when named.
    assert code_of(signed(region="eu-west-1")) == "InvalidSignatureException"
    assert code_of(signed(region="eu-west-1"), region="us-east-1") == "InvalidSignatureException"
    assert verify(signed(region="eu-west-1"), region="eu-west-1") == "AKIDEXAMPLE"
    assert verify(signed(region="eu-west-1"), region=None) == "AKIDEXAMPLE"


def _without_from_signed(request, header: str):
    """The request with ``header`` dropped from SignedHeaders (still sent, so unsigned)."""
    method, path, query, headers, body = request

    def strip(value: str) -> str:
        names = value.split("SignedHeaders=")[1].split(",")[0]
        kept = ";".join(n for n in names.split(";") if n != header)
        return value.replace(f"SignedHeaders={names}", f"SignedHeaders={kept}")

    return method, path, query, [(k, strip(v) if k.lower() == "authorization" else v)
                                 for k, v in headers], body


@pytest.mark.parametrize("header,shown", [
    ("x-amz-target", "X-Amz-Target"), ("content-type", "Content-Type"),
    ("x-amz-date", "X-Amz-Date"), ("x-amz-security-token", "X-Amz-Security-Token"),
])
def test_headers_that_must_be_signed(header, shown):
    request = signed(extra_headers={"X-Amz-Security-Token": "token"})
    with pytest.raises(AuthError) as caught:
        verify(_without_from_signed(request, header))
    assert caught.value.code == "IncompleteSignatureException"
    assert caught.value.message == f"'{shown}' must be a 'SignedHeader' in the AWS Authorization."


def test_signed_header_missing_from_request():
    method, path, query, headers, body = signed(extra_headers={"X-Custom": "1"})
    headers = [(k, v) for k, v in headers if k.lower() != "x-custom"]
    with pytest.raises(AuthError, match="'x-custom' is named as a SignedHeader, but it does "
                       "not exist") as caught:
        verify((method, path, query, headers, body))
    assert caught.value.code == "IncompleteSignatureException"


def test_unsigned_headers_outside_x_amz_are_allowed():
    # botocore leaves user-agent and x-amzn-trace-id unsigned: they must not be required.
    method, path, query, headers, body = signed()
    headers = [*headers, ("User-Agent", "test"), ("X-Amzn-Trace-Id", "Root=1-abc")]
    assert verify((method, path, query, headers, body)) == "AKIDEXAMPLE"


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/dynamodb/aws4_request, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/us-east-1/aws4_request, SignedHeaders=host;x-amz-date, Signature=a",
        "AWS AKIDEXAMPLE:signature",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=x-amz-date, Signature=a",
    ],
)
def test_malformed_authorization(authorization):
    method, path, query, headers, body = signed()
    headers = [(k, authorization if k.lower() == "authorization" else v) for k, v in headers]
    assert code_of((method, path, query, headers, body)) == "IncompleteSignatureException"


def test_x_amz_date_must_be_signed_and_present():
    method, path, query, headers, body = signed()
    no_date = [(k, v) for k, v in headers if k.lower() != "x-amz-date"]
    assert code_of((method, path, query, no_date, body)) == "IncompleteSignatureException"


def test_content_sha256_header_must_match_body():
    for declared in ("UNSIGNED-PAYLOAD", "0" * 64):
        request = signed(extra_headers={"X-Amz-Content-Sha256": declared})
        assert code_of(request) == "InvalidSignatureException"
    # Sent but not signed: refused like any unsigned x-amz-* header.
    method, path, query, headers, body = signed()
    with_hash = [*headers, ("x-amz-content-sha256", "0" * 64)]
    assert code_of((method, path, query, with_hash, body)) == "IncompleteSignatureException"
