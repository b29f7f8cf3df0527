"""The server's door, attacked over raw sockets: SigV4 as AWS enforces it, bounded JSON, gzip
bodies, and a DynamoDB JSON error body for every refusal — against a real server process,
whose log must show no traceback for any of it, and which keeps answering a boto3 client.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import socket
import subprocess
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from server_process import ACCESS_KEY, REGION, SECRET, start_server

TABLE = "door"
PREFIX = "com.amazonaws.dynamodb.v20120810#"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("door"))
    client = server.client()
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield server
    server.kill()
    assert "Traceback" not in server.log(), server.log()


def raw(server, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
    """One POST / over a fresh socket, bytes exactly as given; (status, headers, body)."""
    url = urlsplit(server.endpoint)
    lines = ["POST / HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {len(body)}", "Connection: close", "", ""]
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1") + body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, payload = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), response_headers, payload


def sign(server, target: str, body: bytes, *, region: str = REGION, service: str = "dynamodb",
         when: dt.datetime | None = None, signed_extra: dict[str, str] | None = None,
         unsigned_extra: dict[str, str] | None = None, secret: str = SECRET) -> dict[str, str]:
    """Headers of a request signed by botocore; ``unsigned_extra`` is added after signing
    (the attacker's move), ``signed_extra`` before."""
    url = urlsplit(server.endpoint)
    headers = {"Host": url.netloc, **(signed_extra or {})}
    if target:
        headers = {**headers, "Content-Type": "application/x-amz-json-1.0",
                   "X-Amz-Target": f"DynamoDB_20120810.{target}"}
    request = AWSRequest(method="POST", url=server.endpoint + "/", data=body, headers=headers)
    auth = SigV4Auth(Credentials(ACCESS_KEY, secret), service, region)
    if when is None:
        auth.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime",
                        return_value=when.astimezone(dt.timezone.utc).replace(tzinfo=None)):
            auth.add_auth(request)
    return {**dict(request.headers.items()), **(unsigned_extra or {})}


def error_of(response: tuple[int, dict, bytes]) -> tuple[int, str, str]:
    status, headers, payload = response
    assert headers["content-type"] == "application/x-amz-json-1.0"
    document = json.loads(payload)
    assert set(document) == {"__type", "message"}
    assert document["__type"].startswith(PREFIX)
    return status, document["__type"][len(PREFIX):], document["message"]


def key_body(pk: str) -> bytes:
    return json.dumps({"TableName": TABLE, "Key": {"pk": {"S": pk}}}).encode()


def put(server, pk: str) -> None:
    server.client().put_item(TableName=TABLE, Item={"pk": {"S": pk}, "v": {"N": "1"}})


def exists(server, pk: str) -> bool:
    return "Item" in server.client().get_item(TableName=TABLE, Key={"pk": {"S": pk}})


def test_signed_request_passes(server):
    put(server, "a")
    status, _, payload = raw(server, sign(server, "GetItem", key_body("a")), key_body("a"))
    assert status == 200
    assert json.loads(payload)["Item"]["pk"] == {"S": "a"}


def test_target_not_signed_cannot_turn_a_get_into_a_delete(server):
    put(server, "victim")
    body = key_body("victim")
    # Signed over host;x-amz-date only, then the operation is named afterwards.
    headers = sign(server, "", body, unsigned_extra={
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.DeleteItem"})
    status, code, message = error_of(raw(server, headers, body))
    assert (status, code) == (400, "IncompleteSignatureException")
    assert "'Content-Type' must be a 'SignedHeader'" in message
    # With content-type signed but the target not, the target is named.
    headers = sign(server, "", body, signed_extra={"Content-Type": "application/x-amz-json-1.0"},
                   unsigned_extra={"X-Amz-Target": "DynamoDB_20120810.DeleteItem"})
    status, code, message = error_of(raw(server, headers, body))
    assert (status, code) == (400, "IncompleteSignatureException")
    assert "'X-Amz-Target' must be a 'SignedHeader'" in message
    assert exists(server, "victim")


def test_any_unsigned_x_amz_header_is_refused(server):
    headers = sign(server, "ListTables", b"{}", unsigned_extra={"X-Amz-Meta-Anything": "1"})
    status, code, message = error_of(raw(server, headers, b"{}"))
    assert (status, code) == (400, "IncompleteSignatureException")
    assert "X-Amz-Meta-Anything" in message


def test_signature_for_another_region_is_refused(server):
    headers = sign(server, "ListTables", b"{}", region="eu-west-1")
    status, code, message = error_of(raw(server, headers, b"{}"))
    assert (status, code) == (400, "InvalidSignatureException")
    assert message.startswith("Credential should be scoped to a valid region, not 'eu-west-1'.")


def test_signature_for_another_service_is_refused(server):
    headers = sign(server, "ListTables", b"{}", service="s3")
    status, code, message = error_of(raw(server, headers, b"{}"))
    assert (status, code) == (400, "InvalidSignatureException")
    assert message.startswith("Credential should be scoped to correct service: 'dynamodb'.")


def test_tampered_body_is_refused(server):
    put(server, "kept")
    headers = sign(server, "GetItem", key_body("kept"))
    tampered = json.dumps({"TableName": TABLE, "Key": {"pk": {"S": "kepT"}}}).encode()
    status, code, message = error_of(raw(server, headers, tampered))
    assert (status, code) == (400, "InvalidSignatureException")
    assert message.startswith("The request signature we calculated does not match")


def test_expired_and_future_dates_are_refused(server):
    now = dt.datetime.now(dt.timezone.utc)
    old = sign(server, "ListTables", b"{}", when=now - dt.timedelta(minutes=16))
    status, code, message = error_of(raw(server, old, b"{}"))
    assert (status, code) == (400, "InvalidSignatureException")
    assert message.startswith("Signature expired: ") and "- 15 min.)" in message
    future = sign(server, "ListTables", b"{}", when=now + dt.timedelta(minutes=16))
    status, code, message = error_of(raw(server, future, b"{}"))
    assert (status, code) == (400, "InvalidSignatureException")
    assert message.startswith("Signature not yet current: ") and "+ 15 min.)" in message


def test_no_signature_and_unknown_key(server):
    status, code, message = error_of(raw(server, {
        "Host": urlsplit(server.endpoint).netloc, "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.ListTables"}, b"{}"))
    assert (status, code) == (400, "MissingAuthenticationTokenException")
    assert message == "Request is missing Authentication Token"
    url = server.endpoint + "/"
    request = AWSRequest(method="POST", url=url, data=b"{}", headers={
        "Host": urlsplit(url).netloc, "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.ListTables"})
    SigV4Auth(Credentials("NOBODY", "x"), "dynamodb", REGION).add_auth(request)
    status, code, _ = error_of(raw(server, dict(request.headers.items()), b"{}"))
    assert (status, code) == (400, "UnrecognizedClientException")


def test_deep_json_is_a_validation_error_not_a_traceback(server):
    for depth in (150, 20_000):
        body = b'{"TableName": "door", "Key": {"pk": ' + b"[" * depth + b"]" * depth + b"}}"
        status, code, message = error_of(raw(server, sign(server, "GetItem", body), body))
        assert (status, code) == (400, "ValidationException"), message
        assert "Nesting Levels have exceeded supported limits" in message
    assert "Traceback" not in server.log()
    assert "RecursionError" not in server.log()
    put(server, "still-answering")
    assert exists(server, "still-answering")


def test_bad_json_is_a_serialization_error(server):
    body = b'{"TableName": '
    status, code, _ = error_of(raw(server, sign(server, "ListTables", body), body))
    assert (status, code) == (400, "SerializationException")


def test_gzip_body_is_inflated_after_the_signature_check(server):
    put(server, "zipped")
    body = gzip.compress(key_body("zipped"))
    headers = sign(server, "GetItem", body, signed_extra={"Content-Encoding": "gzip"})
    status, _, payload = raw(server, headers, body)
    assert status == 200, payload
    assert json.loads(payload)["Item"]["pk"] == {"S": "zipped"}


def test_gzip_bomb_is_refused_before_it_is_inflated(server):
    body = gzip.compress(b"{" + b" " * (64 << 20) + b"}", compresslevel=9)  # 64 MiB of JSON
    assert len(body) < 100_000
    headers = sign(server, "ListTables", body, signed_extra={"Content-Encoding": "gzip"})
    status, code, message = error_of(raw(server, headers, body))
    assert (status, code) == (413, "ValidationException")
    assert "once decompressed" in message


def test_other_encodings_and_corrupt_gzip_are_refused(server):
    for encoding, body in (("br", b"{}"), ("gzip", b"not gzip at all")):
        headers = sign(server, "ListTables", body, signed_extra={"Content-Encoding": encoding})
        status, code, _ = error_of(raw(server, headers, body))
        assert (status, code) == (400, "SerializationException")


def test_boto3_session_still_works(server):
    session = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
                                    region_name=REGION)
    client = session.client("dynamodb", endpoint_url=server.endpoint)
    assert TABLE in client.list_tables()["TableNames"]
    resource = session.resource("dynamodb", endpoint_url=server.endpoint)
    table = resource.Table(TABLE)
    table.put_item(Item={"pk": "resource", "n": 5})
    assert table.get_item(Key={"pk": "resource"})["Item"]["n"] == 5


def test_malformed_http_gets_a_json_error_body(server):
    url = urlsplit(server.endpoint)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"application/x-amz-json-1.0" in head
    assert json.loads(payload)["__type"] == PREFIX + "SerializationException"


def test_aws_cli_still_works(server, aws_cli):
    """One real AWS CLI call through the strict door."""
    cli = str(aws_cli)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_PAGER": ""}
    result = subprocess.run([cli, "dynamodb", "list-tables", "--endpoint-url", server.endpoint,
                             "--output", "json"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert TABLE in json.loads(result.stdout)["TableNames"]
