"""The ASGI application: DynamoDB's JSON protocol over an embedded engine.

A bare ASGI callable (no framework: a request is one POST to ``/`` and the work is the
engine's). For each request the event loop reads the body — refused past ``max_body_bytes``
before any parsing — and writes the answer; signature check, JSON decoding, the engine call
and JSON encoding run on a worker thread from a bounded pool (``max_workers``), since the
engine blocks (WAL fsyncs, large scans). The exception is ``INLINE_OPERATIONS``: a GetItem
is one lock-free LMDB read of one item (≤ 400 KB), cheaper than the hop to a worker thread
and back (~100 µs of the event loop's time per request), so it runs on the event loop.

Errors are answered as DynamoDB does: HTTP 400 (client) or 500 (server) with
``{"__type": "com.amazonaws.dynamodb.v20120810#<Code>", "message": "..."}`` — every error,
an unexpected exception included (``InternalServerError``, logged with its traceback; a
client's bad input is never logged as one).

Untrusted input is bounded before it is trusted: the body's size (``max_body_bytes``, also
after decompression), the JSON's nesting depth (``MAX_JSON_DEPTH``: DynamoDB allows 32
levels of nested attributes, two JSON levels each, plus the request's envelope), and the
signature is checked over the bytes as sent. ``Content-Encoding: gzip`` bodies are inflated
after the signature check (SigV4 signs the body as sent). DynamoDB's service model declares
no request compression, so AWS SDKs never compress its requests; gzip is accepted for
proxies and hand-written clients, any other encoding is refused. Responses carry
``x-amzn-RequestId`` and ``x-amz-crc32`` (botocore checks the latter for DynamoDB).
``GET /`` answers ``healthy: dynamodb.<region>.amazonaws.com`` like the real endpoint, for
load-balancer probes.
"""

from __future__ import annotations

import json
import logging
import uuid
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread

from engine.errors import TesseraError, ValidationException
from engine.server.operations import OPERATIONS, ServerContext, error_code
from engine.server.sigv4 import SigV4Verifier

__all__ = [
    "DynamoDBApp",
    "create_app",
    "parse_request_json",
    "gunzip_bounded",
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
]

log = logging.getLogger("engine.server")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # 16 MiB, DynamoDB's request size limit
#: Deepest JSON nesting accepted: 32 DynamoDB levels (two JSON levels each: the attribute
#: value object and its M/L) plus the envelope of the deepest request (TransactWriteItems),
#: with room to spare so the item validator, not the parser, names a too-deep attribute.
MAX_JSON_DEPTH = 100
#: Content-Encoding values accepted (RFC 9110 names; "x-gzip" is gzip's old alias).
_GZIP_ENCODINGS = frozenset({"gzip", "x-gzip"})
TARGET_PREFIX = "DynamoDB_20120810."
ERROR_TYPE_PREFIX = "com.amazonaws.dynamodb.v20120810#"
CONTENT_TYPE = b"application/x-amz-json-1.0"
# Operations that never wait on a lock, a fsync or a large read: run on the event loop.
INLINE_OPERATIONS = frozenset({TARGET_PREFIX + "GetItem"})


class _ProtocolError(TesseraError):
    """A request the protocol layer refuses (bad JSON, unknown operation, too big)."""

    def __init__(self, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class DynamoDBApp:
    """ASGI app serving DynamoDB operations from ``engine``.

    ``credentials`` maps access key id -> secret; ``None`` turns signature checks off
    (for embedding in a process that authenticates by other means — never the default
    of :func:`engine.server.main.serve`).
    """

    def __init__(
        self,
        engine: Any,
        *,
        credentials: Mapping[str, str] | None,
        region: str = "us-east-1",
        account_id: str = "000000000000",
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_workers: int = 16,
        default_partitions: int = 4,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        self.context = ServerContext(
            engine=engine,
            region=region,
            account_id=account_id,
            default_partitions=default_partitions,
        )
        self.verifier = (
            SigV4Verifier(credentials, region=region) if credentials is not None else None
        )
        self.max_body_bytes = max_body_bytes
        self.max_workers = max_workers
        self.on_shutdown = on_shutdown
        self._limiter: anyio.CapacityLimiter | None = None
        self._health = f"healthy: dynamodb.{region}.amazonaws.com ".encode()

    # --- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            await self._http_guarded(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self.on_shutdown is not None:
                        await anyio.to_thread.run_sync(self.on_shutdown)
                except Exception as err:  # report, then let the server finish stopping
                    await send({"type": "lifespan.shutdown.failed", "message": repr(err)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http_guarded(self, scope: dict, receive: Callable, send: Callable) -> None:
        """``_http`` with a last resort: whatever escapes it is answered as DynamoDB's
        InternalServerError (a JSON body, never the server's plain-text 500)."""
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        try:
            await self._http(scope, receive, tracking_send)
        except Exception as err:
            request_id = str(uuid.uuid4())
            log.exception("request %s failed outside the operation", request_id)
            if started:
                raise  # headers are out: nothing left to say in JSON
            status, payload = self._internal_error(err, request_id)
            await self._send(send, status, payload, CONTENT_TYPE, request_id)

    async def _http(self, scope: dict, receive: Callable, send: Callable) -> None:
        method = scope["method"]
        if method == "GET" and scope["path"] == "/":
            await self._send(send, 200, self._health, b"text/plain", str(uuid.uuid4()))
            return
        request_id = str(uuid.uuid4())
        if method != "POST":
            error = _ProtocolError(
                "UnknownOperationException", f"Method {method} is not supported; use POST /", 400
            )
            await self._send_error(send, error, request_id)
            return
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        ]
        body = await self._read_body(receive, headers)
        if isinstance(body, TesseraError):
            await self._send_error(send, body, request_id)
            return
        arguments = (
            method,
            scope.get("raw_path") or scope["path"].encode(),
            scope.get("query_string", b""),
            headers,
            body,
            request_id,
        )
        target = next((value for name, value in headers if name == "x-amz-target"), "")
        if target in INLINE_OPERATIONS:
            status, payload = self.handle(*arguments)
        else:
            if self._limiter is None:
                self._limiter = anyio.CapacityLimiter(self.max_workers)
            status, payload = await anyio.to_thread.run_sync(
                self.handle, *arguments, limiter=self._limiter
            )
        await self._send(send, status, payload, CONTENT_TYPE, request_id)

    async def _read_body(
        self, receive: Callable, headers: list[tuple[str, str]]
    ) -> bytes | TesseraError:
        too_big = _ProtocolError(
            "ValidationException",
            f"Request body exceeds the limit of {self.max_body_bytes} bytes",
            413,
        )
        for name, value in headers:
            if name.lower() == "content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return too_big
                except ValueError:
                    return _ProtocolError(
                        "SerializationException", f"Invalid Content-Length {value!r}"
                    )
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _ProtocolError(
                    "SerializationException", "Client disconnected before the body was read"
                )
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _send(
        self, send: Callable, status: int, payload: bytes, content_type: bytes, request_id: str
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-amzn-requestid", request_id.encode()),
                    (b"x-amz-crc32", str(zlib.crc32(payload) & 0xFFFFFFFF).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _send_error(self, send: Callable, error: TesseraError, request_id: str) -> None:
        status, payload = self._error(error, error.code)
        await self._send(send, status, payload, CONTENT_TYPE, request_id)

    # --- one request, on a worker thread -----------------------------------------------

    def handle(
        self,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        headers: list[tuple[str, str]],
        body: bytes,
        request_id: str = "",
    ) -> tuple[int, bytes]:
        """Authenticate, dispatch and encode one request; returns (HTTP status, body)."""
        try:
            if self.verifier is not None:
                self.verifier.verify(
                    method,
                    raw_path.decode("latin-1"),
                    query_string.decode("latin-1"),
                    headers,
                    body,
                )
            target = next((value for name, value in headers if name.lower() == "x-amz-target"), "")
            operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else None
            entry = OPERATIONS.get(operation) if operation else None
            if entry is None:
                raise _ProtocolError(
                    "UnknownOperationException",
                    f"Unknown operation {target!r}; this server supports "
                    + ", ".join(TARGET_PREFIX + name for name in OPERATIONS),
                )
            function, allowed = entry
            body = self._decoded_body(headers, body)
            request = parse_request_json(body)
        except TesseraError as err:
            return self._error(err, err.code)
        except Exception as err:  # a bug in the door itself: still a DynamoDB error body
            log.exception("request %s: checking it failed", request_id)
            return self._internal_error(err, request_id)
        try:
            return 200, _dumps(function(self.context, request))
        except TesseraError as err:
            return self._error(err, error_code(err, allowed))
        except RecursionError:
            return self._error(
                ValidationException("The request nests values too deeply"), "ValidationException"
            )
        except Exception as err:
            log.exception("request %s (%s) failed", request_id, operation)
            return self._internal_error(err, request_id)

    def _decoded_body(self, headers: list[tuple[str, str]], body: bytes) -> bytes:
        """The body with its Content-Encoding undone, bounded by ``max_body_bytes``."""
        encodings = [
            token.strip().lower()
            for name, value in headers
            if name.lower() == "content-encoding"
            for token in value.split(",")
            if token.strip()
        ]
        for encoding in reversed(encodings):  # applied in order, so undone in reverse
            if encoding == "identity":
                continue
            if encoding not in _GZIP_ENCODINGS:
                raise _ProtocolError(
                    "SerializationException",
                    f"Content-Encoding {encoding!r} is not supported; send the body as is "
                    "(identity) or gzip-compressed",
                )
            body = gunzip_bounded(body, self.max_body_bytes)
        return body

    @staticmethod
    def _internal_error(err: BaseException, request_id: str) -> tuple[int, bytes]:
        message = f"Internal server error ({type(err).__name__}); request id {request_id}"
        return 500, _dumps({"__type": ERROR_TYPE_PREFIX + "InternalServerError",
                            "message": message})

    def _error(self, error: TesseraError, code: str) -> tuple[int, bytes]:
        status = getattr(error, "http_status", 500)
        if code == "InternalServerError":
            status = 500
        body = {"__type": ERROR_TYPE_PREFIX + code, "message": error.message}
        # Fields DynamoDB adds to some errors, e.g. the old "Item" of a failed condition
        # with ReturnValuesOnConditionCheckFailure=ALL_OLD (engine.server.operations).
        body.update(getattr(error, "response_fields", None) or {})
        return status, _dumps(body)


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body (one or more members), refusing more than ``limit`` bytes of
    output before producing them: a small bomb never becomes a large buffer."""
    out: list[bytes] = []
    size = 0
    remaining = data
    while remaining:
        inflater = zlib.decompressobj(wbits=31)  # 16 + MAX_WBITS: gzip header and trailer
        try:
            chunk = inflater.decompress(remaining, limit - size + 1)
        except zlib.error as err:
            raise _ProtocolError(
                "SerializationException", f"The gzip-encoded request body is corrupt: {err}"
            ) from None
        size += len(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise _ProtocolError(
                "ValidationException",
                f"Request body exceeds the limit of {limit} bytes once decompressed",
                413,
            )
        if not inflater.eof:
            raise _ProtocolError(
                "SerializationException", "The gzip-encoded request body is truncated"
            )
        out.append(chunk)
        remaining = inflater.unused_data
    return b"".join(out)


def parse_request_json(body: bytes) -> dict:
    """The request as a dict; malformed or too deeply nested JSON is a DynamoDB error.

    The nesting is checked without recursion: a body can nest deeper than Python's stack
    (``RecursionError`` is also caught, for json's own C recursion guard). Bodies with
    fewer brackets than ``MAX_JSON_DEPTH`` skip the walk (almost every request)."""
    if not body:
        return {}
    try:
        request = json.loads(body)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as err:
        raise _ProtocolError(
            "SerializationException", f"The request body is not valid JSON: {err}"
        ) from None
    if not isinstance(request, dict):
        raise _ProtocolError("SerializationException", "The request body must be a JSON object")
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH:
        _check_depth(request)
    return request


def _too_deep() -> _ProtocolError:
    return _ProtocolError(
        "ValidationException",
        f"Nesting Levels have exceeded supported limits: the request's JSON nests deeper "
        f"than {MAX_JSON_DEPTH} levels (DynamoDB allows 32 levels of nested attributes)",
    )


def _check_depth(document: Any) -> None:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values()
                         if isinstance(child, (dict, list)))
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value
                         if isinstance(child, (dict, list)))


def create_app(engine: Any, **options: Any) -> DynamoDBApp:
    """Build the ASGI app; options as for :class:`DynamoDBApp`."""
    return DynamoDBApp(engine, **options)
