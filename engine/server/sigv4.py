"""Verify AWS Signature Version 4 on incoming requests (the header form DynamoDB clients use).

The canonical request, string to sign and signing key follow AWS's "Create a signed AWS API
request" page, as botocore's ``SigV4Auth`` builds them. What AWS enforces, this enforces
(each failure an :class:`AuthError` carrying DynamoDB's error code, HTTP 400):

- no ``Authorization`` header -> ``MissingAuthenticationTokenException``
- a malformed one (no Credential/SignedHeaders/Signature, a bad scope, no ``X-Amz-Date``),
  or one that leaves unsigned a header that must be signed -> ``IncompleteSignatureException``.
  Must be signed: ``host``, ``x-amz-date``, ``content-type`` when present, and every
  ``x-amz-*`` header present — above all ``x-amz-target``, which names the operation: a
  signature that did not cover it could be replayed as any other operation (a GetItem
  resent as DeleteItem). A name in SignedHeaders that the request lacks is refused too.
- an access key not in the credentials -> ``UnrecognizedClientException``
- a signature that does not match (the body is hashed into it, so a changed body fails
  here), an ``x-amz-content-sha256`` that is not the body's hash, a credential scope naming
  another region than this server's or another service than ``dynamodb``, or a request
  date more than 15 minutes from the server clock ("Signature expired" / "Signature not
  yet current", as AWS words them) -> ``InvalidSignatureException``

Signatures are compared with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote

from engine.errors import TesseraError

__all__ = ["AuthError", "SigV4Verifier", "MAX_CLOCK_SKEW"]

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_PARAMETER_RE = re.compile(r"\s*([A-Za-z]+)\s*=\s*([^,\s]*)\s*")


class AuthError(TesseraError):
    """A request failed authentication; ``code`` is DynamoDB's error code."""

    http_status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _normalize_path(raw_path: str) -> str:
    """Canonical URI: the path as sent (already percent-encoded once), dot segments removed
    and encoded again, which is what botocore signs for every service but S3."""
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    path = "/" + "/".join(segments)
    if raw_path.endswith("/") and path != "/":
        path += "/"
    return quote(path, safe="/~")


def _canonical_query(query_string: str) -> str:
    pairs = []
    for part in query_string.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    pairs.sort()
    return "&".join(f"{key}={value}" for key, value in pairs)


def _display_name(header: str) -> str:
    """``x-amz-target`` -> ``X-Amz-Target``, as AWS names headers in its messages."""
    return "-".join(part.capitalize() for part in header.split("-"))


class SigV4Verifier:
    """Checks requests against ``credentials``: access key id -> secret access key.

    ``region`` is the region a credential scope must name (this server's); ``None``
    accepts any (for tests of the signature arithmetic alone, never the server's use).
    """

    def __init__(
        self,
        credentials: Mapping[str, str],
        *,
        service: str = "dynamodb",
        region: str | None = "us-east-1",
        max_skew: dt.timedelta = MAX_CLOCK_SKEW,
    ) -> None:
        self.credentials = dict(credentials)
        self.service = service
        self.region = region
        self.max_skew = max_skew
        self._key_cache: dict[tuple[str, str, str, str], bytes] = {}

    def verify(
        self,
        method: str,
        raw_path: str,
        query_string: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        now: dt.datetime | None = None,
    ) -> str:
        """Raise :class:`AuthError` unless the request is signed correctly; returns the access key.

        ``headers`` are (name, value) pairs as received; names are compared lower-cased and
        repeated headers are joined with commas, as the signer does.
        """
        header_values: dict[str, list[str]] = {}
        for name, value in headers:
            header_values.setdefault(name.lower(), []).append(value)
        authorization = header_values.get("authorization")
        if not authorization:
            raise AuthError(
                "MissingAuthenticationTokenException", "Request is missing Authentication Token"
            )
        auth = authorization[0].strip()
        algorithm, _, parameter_text = auth.partition(" ")
        if algorithm != ALGORITHM:
            raise AuthError(
                "IncompleteSignatureException",
                f"Authorization header requires the {ALGORITHM} algorithm. Authorization={auth}",
            )
        parameters = {}
        for part in parameter_text.split(","):
            match = _PARAMETER_RE.fullmatch(part)
            if match:
                parameters[match.group(1)] = match.group(2)
        for required in ("Credential", "SignedHeaders", "Signature"):
            if not parameters.get(required):
                raise AuthError(
                    "IncompleteSignatureException",
                    f"Authorization header requires '{required}' parameter. Authorization={auth}",
                )
        scope_parts = parameters["Credential"].split("/")
        if len(scope_parts) != 5 or scope_parts[4] != "aws4_request":
            raise AuthError(
                "IncompleteSignatureException",
                "Credential should be scoped to a valid region, service and 'aws4_request' "
                f"terminator: {parameters['Credential']!r}",
            )
        access_key, scope_date, scope_region, scope_service, _ = scope_parts
        signed_headers = parameters["SignedHeaders"].split(";")
        if signed_headers != sorted(signed_headers) or any(h != h.lower() for h in signed_headers):
            raise AuthError(
                "IncompleteSignatureException",
                "SignedHeaders must be lower-case names in sorted order. "
                f"SignedHeaders={parameters['SignedHeaders']}",
            )
        signed_set = frozenset(signed_headers)
        if "host" not in signed_set:
            raise AuthError(
                "IncompleteSignatureException",
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            )
        # AWS: "The host header and any x-amz-* headers that you plan to add to the request
        # must be included in the signed headers"; content-type too, since it is sent.
        for name in sorted(header_values):
            if name not in signed_set and (name.startswith("x-amz-") or name == "content-type"):
                raise AuthError(
                    "IncompleteSignatureException",
                    f"'{_display_name(name)}' must be a 'SignedHeader' in the AWS Authorization.",
                )

        # Request time: x-amz-date (signed), else Date.
        if "x-amz-date" in header_values:
            amz_date = header_values["x-amz-date"][0].strip()
            try:
                request_time = dt.datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(
                    tzinfo=dt.timezone.utc
                )
            except ValueError:
                raise AuthError(
                    "IncompleteSignatureException",
                    f"X-Amz-Date must be in ISO 8601 basic format (YYYYMMDD'T'HHMMSS'Z'), got {amz_date!r}",
                ) from None
        else:
            raise AuthError(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header "
                "(this server accepts X-Amz-Date). Authorization=" + auth,
            )
        if scope_date != amz_date[:8]:
            raise AuthError(
                "InvalidSignatureException",
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
            )
        if scope_service != self.service:
            raise AuthError(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{self.service}'. ",
            )
        if self.region is not None and scope_region != self.region:
            raise AuthError(
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{scope_region}'. "
                f"(this server's region is '{self.region}')",
            )

        if access_key not in self.credentials:
            raise AuthError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )

        now = now or dt.datetime.now(dt.timezone.utc)
        if request_time < now - self.max_skew:
            raise AuthError(
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than "
                f"{(now - self.max_skew).strftime(_AMZ_DATE_FORMAT)} "
                f"({now.strftime(_AMZ_DATE_FORMAT)} - 15 min.)",
            )
        if request_time > now + self.max_skew:
            raise AuthError(
                "InvalidSignatureException",
                f"Signature not yet current: {amz_date} is still later than "
                f"{(now + self.max_skew).strftime(_AMZ_DATE_FORMAT)} "
                f"({now.strftime(_AMZ_DATE_FORMAT)} + 15 min.)",
            )

        body_hash = hashlib.sha256(body).hexdigest()
        declared_hash = header_values.get("x-amz-content-sha256", [None])[0]
        if declared_hash is not None:
            declared_hash = declared_hash.strip()
            # An unsigned payload would let anyone who saw one signed request replay its
            # headers with another body; DynamoDB signs bodies, so refuse it.
            if declared_hash == _UNSIGNED_PAYLOAD or declared_hash.lower() != body_hash:
                raise AuthError(
                    "InvalidSignatureException",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                )

        canonical_headers = []
        for name in signed_headers:
            values = header_values.get(name)
            if values is None:
                raise AuthError(
                    "IncompleteSignatureException",
                    f"'{name}' is named as a SignedHeader, but it does not exist in the HTTP "
                    "request.",
                )
            canonical_headers.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
        canonical_request = "\n".join(
            (
                method.upper(),
                _normalize_path(raw_path or "/"),
                _canonical_query(query_string),
                "".join(canonical_headers),
                parameters["SignedHeaders"],
                body_hash,
            )
        )
        scope = "/".join(scope_parts[1:])
        string_to_sign = "\n".join(
            (
                ALGORITHM,
                amz_date,
                scope,
                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
            )
        )
        cache_key = (access_key, scope_date, scope_region, scope_service)
        key = self._key_cache.get(cache_key)
        if key is None:
            key = signing_key(self.credentials[access_key], scope_date, scope_region, scope_service)
            if len(self._key_cache) > 1024:
                self._key_cache.clear()
            self._key_cache[cache_key] = key
        expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parameters["Signature"].lower()):
            raise AuthError("InvalidSignatureException", _BAD_SIGNATURE)
        return access_key
