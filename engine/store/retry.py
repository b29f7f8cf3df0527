"""The one retry policy for S3 (SPEC §9): who retries what, how often, how long it waits.

Two layers, each for its own faults, and no third:

1. **botocore** retries every request in its ``standard`` (or ``adaptive``) mode: lost or
   refused connections, timeouts, HTTP 500/502/503/504, throttling (``SlowDown``, 429) and
   ``RequestTimeout`` — up to ``request_attempts`` attempts per request, with botocore's
   own jittered exponential backoff and retry quota. Configured once, here
   (:meth:`S3RetryPolicy.botocore_retries`).
2. **ours** (:meth:`S3RetryPolicy.run`) retries only what botocore cannot know is worth
   another try: bytes damaged in flight. An upload answered ``BadDigest``,
   ``XAmzContentSHA256Mismatch`` or ``IncompleteBody`` (a 400 to botocore), and a ranged
   GET whose body arrives short or breaks off (:class:`ShortRead`; the body is read after
   botocore has returned). At most ``integrity_attempts`` sends of one part or range,
   waiting ``base_delay_seconds * 2**(n-1)`` (jittered, at most ``max_delay_seconds``).

Nothing else retries transport: the backup export (``engine.backup.export``) re-exports a
partition only when the bytes it staged fail their checksum, and CopyBackup does not retry.

The bound, per part or ranged read: at most ``integrity_attempts`` sends, each at most
``request_attempts`` HTTP requests. With the defaults: 3 requests for transport faults
alone, 3 for damaged bytes alone, 9 when both keep alternating. (Before this module the
layers nested: botocore 3 × S3Store 4 × export 3 = 36 requests for one part.)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from engine.errors import StoreError

T = TypeVar("T")

#: The answers that mean the object (or bucket key) is not there.
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
#: Answers to an upload that mean the bytes were damaged on the way: the server computed
#: a different digest or received fewer bytes. botocore sees a plain 400 and gives up.
INTEGRITY_CODES = frozenset({"BadDigest", "XAmzContentSHA256Mismatch", "IncompleteBody"})
#: What botocore's standard mode retries by itself (botocore/retries/standard.py), used
#: only to count its attempts in messages; the decision is botocore's.
_BOTOCORE_RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})

_HINTS = {
    "NoSuchUpload": "the server dropped the multipart upload (rclone does so after a BadDigest part)",
    "NoSuchBucket": "create the bucket first or check the store URL",
    "AccessDenied": "check the credentials and the bucket policy",
    "InvalidAccessKeyId": "check the access key",
    "SignatureDoesNotMatch": "check the secret key",
}


class ShortRead(Exception):
    """A ranged GET's body arrived short or broke off: worth another send (ours)."""


def error_code(err: BaseException) -> str:
    """The S3 error code of a ``ClientError`` (``"BadDigest"``, ``"NoSuchKey"``), else ``""``."""
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def describe(err: BaseException) -> str:
    """One line for a message: the code, HTTP status and server message, plus a hint."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.get("Code", "?")
        message = error.get("Message") or ""
        text = f"{code} (HTTP {status})" + (f": {message}" if message and message != code else "")
        hint = _HINTS.get(code)
        return f"{text}; {hint}" if hint else text
    return f"{type(err).__name__}: {err}"


def is_integrity_failure(err: BaseException) -> bool:
    """True for the faults our loop retries: bytes damaged in flight, either way."""
    return isinstance(err, ShortRead) or error_code(err) in INTEGRITY_CODES


@dataclass(frozen=True)
class S3RetryPolicy:
    """Retry counts and backoff for one :class:`~engine.store.s3.S3Store` (see the module
    docstring for who retries what). ``mode`` is botocore's: ``"standard"`` or
    ``"adaptive"`` (standard plus client-side rate limiting when throttled)."""

    request_attempts: int = 3  # botocore's default for standard mode
    integrity_attempts: int = 3
    base_delay_seconds: float = 0.25
    max_delay_seconds: float = 10.0
    mode: str = "standard"

    def __post_init__(self) -> None:
        if self.request_attempts < 1 or self.integrity_attempts < 1:
            raise ValueError("request_attempts and integrity_attempts must be at least 1")
        if self.mode not in ("standard", "adaptive"):
            raise ValueError(f"retry mode {self.mode!r}: use 'standard' or 'adaptive'")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0:
            raise ValueError("retry delays must not be negative")

    @property
    def max_requests_per_part(self) -> int:
        """The bound: HTTP requests for one part or range in the worst case."""
        return self.request_attempts * self.integrity_attempts

    def botocore_retries(self) -> dict[str, object]:
        """``botocore.config.Config(retries=...)``: the only place botocore's are set."""
        return {"mode": self.mode, "total_max_attempts": self.request_attempts}

    def backoff_seconds(self, attempt: int) -> float:
        """Wait before send ``attempt + 1``: exponential with jitter (50-100 %), capped."""
        delay = self.base_delay_seconds * 2 ** (attempt - 1)
        return min(self.max_delay_seconds, delay * (0.5 + random.random() / 2))

    def requests_made(self, err: BaseException) -> int:
        """How many HTTP requests the send that failed with ``err`` took (botocore's
        ``RetryAttempts`` when it reports them; its limit for a retried connection error)."""
        if isinstance(err, ClientError):
            metadata = err.response.get("ResponseMetadata", {})
            if "RetryAttempts" in metadata:
                return int(metadata["RetryAttempts"]) + 1
            status = metadata.get("HTTPStatusCode") or 0
            return self.request_attempts if status in _BOTOCORE_RETRIED_STATUS else 1
        if isinstance(err, (BotoConnectionError, HTTPClientError)):
            return self.request_attempts
        return 1

    def run(
        self,
        what: str,
        attempt_fn: Callable[[int], T],
        translate: Callable[[BaseException, str], StoreError],
        *,
        first_attempt: int = 1,
    ) -> T:
        """Call ``attempt_fn(n)`` for ``n = first_attempt, …`` until it returns, sending
        again only after an integrity failure and at most up to ``integrity_attempts``.

        Anything else ends the loop at once: S3 and botocore errors become
        ``translate(err, message)`` (a ``StoreError`` naming ``what``, the attempts and the
        last error), our own errors (``ChecksumMismatchError``, …) pass through unchanged.
        ``first_attempt > 1`` continues a budget already partly spent (a restarted upload).
        """
        errors: list[BaseException] = []
        requests = 0
        attempt = first_attempt
        while True:
            if attempt > self.integrity_attempts:
                raise StoreError(
                    f"{what}: already sent {self.integrity_attempts} time(s), the most this "
                    "store's retry policy allows (integrity_attempts)"
                )
            try:
                return attempt_fn(attempt)
            except Exception as err:  # noqa: BLE001 - classified just below
                errors.append(err)
                requests += self.requests_made(err)
                if not is_integrity_failure(err) or attempt >= self.integrity_attempts:
                    break
            time.sleep(self.backoff_seconds(attempt))
            attempt += 1
        last = errors[-1]
        if not isinstance(last, (ClientError, BotoCoreError, ShortRead)):
            raise last  # our own errors and bugs pass through
        message = f"{what} failed after {requests} attempt(s); last error: {describe(last)}"
        if len(errors) > 1 and describe(errors[0]) != describe(last):
            message += f"; first error: {describe(errors[0])}"
        raise translate(last, message) from last
