"""The HTTP server's guards, as plain ASGI middleware: the API key and the request body limit.

Why ASGI middleware rather than route dependencies: both must act before any route runs (a
wrong key means *nothing happens*; an oversized body is refused before it is buffered), and
they must cover routes a user mounts next to ours. The key is compared in constant time.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Default largest request body: a start input or event payload (records themselves fit ~900 KB).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Paths served without the key: probes, and the API's description (it holds no instance data).
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/"})
#: Path prefixes served without the key: the dashboard's page and files (no instance data; the
#: page asks for the key, and every data route it calls needs it).
PUBLIC_PREFIXES = ("/dashboard/static/",)


async def send_json(send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


def request_key(scope: Scope) -> str | None:
    """The key a request carries: DF's ``code`` query parameter or ``Authorization: Bearer``."""
    query: bytes = scope.get("query_string", b"")  # ASGI: raw bytes
    codes = parse_qs(query.decode("latin-1")).get("code")
    if codes:
        return codes[0]
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])  # ASGI: (name, value) byte pairs
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class ApiKeyMiddleware:
    """401 unless the request carries ``api_key``; routes in PUBLIC_PATHS are open."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or (path.startswith(PUBLIC_PREFIXES) and ".." not in path):
            await self.app(scope, receive, send)
            return
        given = request_key(scope)
        if given is None or not hmac.compare_digest(given.encode(), self._key):
            reason = "missing API key" if given is None else "wrong API key"
            await send_json(send, 401, {"error": f"{reason}: pass ?code=KEY or Authorization: Bearer KEY"},
                            [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    """Raised inside receive() once a streamed body passes the limit (caught by the middleware)."""


class BodyLimitMiddleware:
    """413 for a request body over ``limit`` bytes, by Content-Length or while it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await send_json(send, 413, {"error": self._message(int(value))})
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await send_json(send, 413, {"error": self._message(seen)})

    def _message(self, size: int) -> str:
        return f"request body of {size}+ bytes is over the limit of {self.limit} bytes"
