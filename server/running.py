"""Running the ASGI app with uvicorn: in the foreground (the command) or on a thread
(tests, benchmarks, a window that serves its own engine), on a port chosen by the OS."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def uvicorn_config(
    app: FastAPI,
    host: str,
    port: int,
    *,
    max_message_bytes: int,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    log_level: str = "info",
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_max_size=max_message_bytes,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        log_level=log_level,
        lifespan="off",
    )


class BackgroundServer:
    """uvicorn on a daemon thread; a context manager that stops it on exit."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, **options) -> None:
        options.setdefault("max_message_bytes", 64 * 1024 * 1024)
        options.setdefault("log_level", "warning")
        self._server = uvicorn.Server(uvicorn_config(app, host, port, **options))
        self._thread = threading.Thread(target=self._server.run, name="diffusiondesk-server")
        self._thread.daemon = True
        self.host = host
        self.port = port

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
