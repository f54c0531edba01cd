"""What keeps a reachable server safe: the access token, body size limits, request rates.

The token is checked in constant time on every HTTP request and WebSocket handshake
("Authorization: Bearer TOKEN"; A1111 clients may send it as the password of HTTP basic
auth). Only its SHA-256 digest is stored, so a generated token is shown exactly once.
The middlewares are plain ASGI, so they guard every route, streaming ones included.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_ENV = "DIFFUSIONDESK_TOKEN"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenCheck:
    """Holds a token's digest; check() compares in constant time."""

    def __init__(self, token_digest: str) -> None:
        self._digest = token_digest.encode("ascii")

    @classmethod
    def for_token(cls, token: str) -> TokenCheck:
        return cls(digest(token))

    def check(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(digest(presented).encode("ascii"), self._digest)


def load_or_create_token(path: Path, *, renew: bool = False) -> tuple[TokenCheck, str | None]:
    """The stored token's check, and the new token's text when one was just made (to be
    shown once; only its digest is written, readable by its owner alone)."""
    if path.is_file() and not renew:
        text = path.read_text(encoding="ascii", errors="replace").strip()
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            return TokenCheck(text), None
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(digest(token) + "\n")
    os.replace(tmp, path)
    return TokenCheck.for_token(token), token


def presented_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token in an Authorization header: Bearer, or the password of Basic auth."""
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        text = value.decode("latin-1").strip()
        scheme, _, rest = text.partition(" ")
        if scheme.lower() == "bearer":
            return rest.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.partition(":")[2]
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any], headers=()) -> None:
    data = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class AuthMiddleware:
    """Refuses any request or WebSocket handshake without the right token."""

    def __init__(self, app: ASGIApp, check: TokenCheck | None) -> None:
        self.app, self.check = app, check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.check is None or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if self.check.check(presented_token(scope.get("headers", []))):
            return await self.app(scope, receive, send)
        body = {"error": "unauthorized", "detail": "Missing or wrong access token."}
        if scope["type"] == "http":
            await _send_json(
                send, 401, body, [(b"www-authenticate", b'Bearer realm="diffusiondesk"')]
            )
        elif "websocket.http.response" in scope.get("extensions", {}):
            await _send_json(_ws_denial(send), 401, body)
        else:
            await send({"type": "websocket.close", "code": 1008})


def _ws_denial(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        message = dict(message)
        message["type"] = "websocket." + message["type"]
        await send(message)

    return wrapped


class OriginMiddleware:
    """Refuses requests a web browser sends on behalf of another site.

    Browsers let any page open a WebSocket to 127.0.0.1 or post to it; they always say
    which page with an Origin header. Our clients send none, or the server's own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers", []))
            origin = headers.get(b"origin")
            if origin is not None and origin != b"null":
                host = urlsplit(origin.decode("latin-1")).netloc.lower()
                if host != headers.get(b"host", b"").decode("latin-1").lower():
                    body = {
                        "error": "forbidden",
                        "detail": "Requests from web pages of other sites are not accepted.",
                    }
                    if scope["type"] == "http":
                        return await _send_json(send, 403, body)
                    return await send({"type": "websocket.close", "code": 1008})
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses HTTP bodies over max_bytes with 413 before the route reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = {
            "error": "too_large",
            "detail": f"The request is larger than this server's limit of "
            f"{self.max_bytes / 1e6:.0f} MB; send a smaller picture.",
        }
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await _send_json(send, 413, too_big)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await _send_json(send, 413, too_big)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RateLimiter:
    """A token bucket per client: `rate` requests a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return False
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > 10_000:  # forget idle clients
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
            return True


class RateLimitMiddleware:
    """429 for an HTTP client over its request rate (WebSocket submits are limited apart)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.limiter.allow(client_key(scope)):
            return await _send_json(
                send,
                429,
                {"error": "too_many_requests", "detail": "Too many requests; slow down."},
                [(b"retry-after", b"1")],
            )
        await self.app(scope, receive, send)


def client_key(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
