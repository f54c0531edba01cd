"""The server's ASGI application: the streaming channel, the A1111 routes, the guards.

create_app() wires a JobHub (and so one engine) to FastAPI. The guards wrap every route:
the token check outermost, then the per-client request rate, then the body size limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, WebSocket

from engine import wire
from server import a1111
from server.hub import JobHub
from server.security import (
    AuthMiddleware,
    BodyLimitMiddleware,
    OriginMiddleware,
    RateLimiter,
    RateLimitMiddleware,
    TokenCheck,
)
from server.stream import StreamLimits, StreamSession

STREAM_PATH = "/v1/stream"


@dataclass(frozen=True)
class ServerConfig:
    token: TokenCheck | None = None  # None: no token asked (only ever on loopback)
    max_body_bytes: int = 64 * 1024 * 1024  # HTTP bodies and WebSocket messages
    requests_per_second: float = 50.0  # any HTTP request, per client address
    request_burst: int = 200
    submits_per_second: float = 5.0  # generations, per client address
    submit_burst: int = 60
    max_live_jobs: int = 64  # queued or running jobs per client
    include_detail: bool = False  # send tracebacks of internal errors to clients


def create_app(hub: JobHub, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    app = FastAPI(title="DiffusionDesk server", openapi_url=None, docs_url=None, redoc_url=None)
    submits = RateLimiter(config.submits_per_second, config.submit_burst)
    limits = StreamLimits(config.max_live_jobs, config.include_detail)

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        return {
            "server": "DiffusionDesk",
            "protocol": wire.PROTOCOL_VERSION,
            "where": hub.where,
            "device": hub.engine.device_description,
            "models": hub.catalog.names(),
        }

    @app.websocket(STREAM_PATH)
    async def stream(ws: WebSocket) -> None:
        await StreamSession(ws, hub, submits, limits).run()

    app.include_router(a1111.router(a1111.A1111State(hub, submits)))
    # Added innermost first: the origin and token checks run before anything reads the body.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        limiter=RateLimiter(config.requests_per_second, config.request_burst),
    )
    app.add_middleware(AuthMiddleware, check=config.token)
    app.add_middleware(OriginMiddleware)
    return app
