"""HTTP connection limits the ASGI server (uvicorn) does not have: a header-read timeout and
a cap on open connections. Idle keep-alive connections are closed by uvicorn's own
``timeout_keep_alive``, which ``tessera serve --idle-timeout`` sets.

Without these, a client can hold the server's file descriptors forever: uvicorn starts no
timer on a connection until its first response, so connections that send nothing (or a
header a byte a minute) stay open, and nothing bounds how many are open at once.

- ``header_timeout_s``: from a connection's opening, or from the first byte of each later
  request, the request line and headers must be complete within this time, else the
  connection is closed. (The body is bounded by size, not time.)
- ``max_connections``: a connection accepted while this many are open is answered HTTP
  503 with DynamoDB's ``ServiceUnavailable`` JSON body (AWS SDKs retry it) and closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["limited_protocol", "DEFAULT_HEADER_TIMEOUT_S", "DEFAULT_MAX_CONNECTIONS",
           "DEFAULT_IDLE_TIMEOUT_S"]

log = logging.getLogger("engine.server")

DEFAULT_IDLE_TIMEOUT_S = 30.0  # keep-alive: AWS SDKs reuse pooled connections within this
DEFAULT_HEADER_TIMEOUT_S = 10.0  # request line + headers: a few hundred bytes
DEFAULT_MAX_CONNECTIONS = 512  # well under the usual 1024 open-file limit, which LMDB shares

_OVERLOADED_BODY = json.dumps({
    "__type": "com.amazonaws.dynamodb.v20120810#ServiceUnavailable",
    "message": "The server has too many open connections; retry later",
}).encode()
_OVERLOADED = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/x-amz-json-1.0\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_OVERLOADED_BODY)).encode() + b"\r\n\r\n" + _OVERLOADED_BODY
)


class _LimitedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a header timer and a connection cap."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    _last_refusal_log: float = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refused = True
            self.connections.discard(self)
            transport.write(_OVERLOADED)
            transport.close()
            now = time.monotonic()
            cls = type(self)
            if now - cls._last_refusal_log > 10.0:  # at most one line per 10 s
                cls._last_refusal_log = now
                log.warning("refusing connections: %d open (--max-connections %d)",
                            len(self.connections), self.max_connections)
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_header_timer()
        elif self.conn.their_state is h11.IDLE:
            # Part of a request line or headers: the clock runs from its first byte.
            self._arm_header_timer()
        else:
            self._cancel_header_timer()  # headers complete (SEND_BODY/DONE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s,
                                                      self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def on_response_complete(self) -> None:
        self._cancel_header_timer()  # the keep-alive timer takes over until the next byte
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """A request HTTP itself cannot parse: DynamoDB's JSON error body, as for every
        other error, instead of uvicorn's plain text."""
        body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#SerializationException",
                           "message": f"{msg} (malformed HTTP/1.1)"}).encode()
        headers = [(b"content-type", b"application/x-amz-json-1.0"), (b"connection", b"close")]
        try:
            self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers,
                                                             reason=b"Bad Request")))
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            pass  # too broken to answer in HTTP at all
        self.transport.close()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is being produced (pipelined bytes wait for it)
        log.debug("closing a connection from %s: no complete request headers in %.1f s",
                  self.client, self.header_timeout_s)
        self.transport.close()


def limited_protocol(*, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
                     max_connections: int = DEFAULT_MAX_CONNECTIONS) -> type[H11Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    if header_timeout_s <= 0 or max_connections < 1:
        raise ValueError("header_timeout_s must be > 0 and max_connections >= 1")
    return type("LimitedH11Protocol", (_LimitedH11Protocol,),
                {"header_timeout_s": header_timeout_s, "max_connections": max_connections})
