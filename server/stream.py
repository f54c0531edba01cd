"""The streaming channel: one WebSocket per client carrying engine/api's records.

Client to server (JSON text):
  {"op": "hello", "protocol": 1, "client": ID}        first, once
  {"op": "submit", "ref": N, "request": {...}}         a GenerationRequest (engine.wire)
  {"op": "cancel", "ref": N}
Server to client:
  {"type": "hello", "protocol": 1, "device": ..., "server": ..., "models": [...]}
  {"type": "accepted", "ref": N, "job": PUBLIC_ID}
  {"type": "rejected", "ref": N, "error": KIND, "message": ...}
  {"type": "event", "ref": N, "event": {...}}           an Event (engine.wire)
  {"type": "error", "message": ...}                    a message that made no sense

A slow client gets the newest preview only: a Step still waiting to be sent is replaced
by the next Step of the same job (Outbox). Events are encoded off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from engine import wire
from engine.api import EngineError, Event, Step
from engine.wire import WireError
from server.hub import JobHub, failure_of
from server.security import RateLimiter, client_key

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


@dataclass(frozen=True)
class StreamLimits:
    max_live_jobs: int = 64  # jobs one client may have queued or running at once
    include_detail: bool = False  # tracebacks reveal the server's paths: off by default


class Outbox:
    """Messages waiting for one client, in order; an unsent Step of a job is replaced by
    that job's newer Step, so a client that falls behind skips stale previews."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[tuple[str, Any]] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0

    def push(self, item: tuple[str, Any]) -> None:
        """On the event loop's thread."""
        kind, value = item
        if kind == "event" and isinstance(value[1], Step):
            job = value[0]
            for i in range(len(self._items) - 1, -1, -1):
                other_kind, other = self._items[i]
                if other_kind == "event" and other[0] == job:
                    if isinstance(other[1], Step):
                        self._items[i] = item
                        self.dropped += 1
                        return
                    break
        self._items.append(item)
        self._ready.set()

    def push_threadsafe(self, item: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
            self._loop.call_soon_threadsafe(self.push, item)

    async def get(self) -> tuple[str, Any]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class StreamSession:
    """One connected client: reads its ops, writes its events."""

    def __init__(
        self, ws: WebSocket, hub: JobHub, limiter: RateLimiter, limits: StreamLimits
    ) -> None:
        self.ws, self.hub, self.limiter, self.limits = ws, hub, limiter, limits
        self.client = client_key(ws.scope)
        self.owner = ""
        self.outbox = Outbox(asyncio.get_running_loop())
        self.refs: dict[str, int] = {}  # public id -> the client's ref
        self.publics: dict[int, str] = {}

    async def run(self) -> None:
        await self.ws.accept()
        try:
            hello = await asyncio.wait_for(self.ws.receive_json(), HELLO_TIMEOUT)
        except (TimeoutError, WebSocketDisconnect, ValueError):
            await self._close(1002)
            return
        if not self._greet(hello):
            await self._send({"type": "error", "message": "expected a hello with protocol 1"})
            await self._close(1002)
            return
        await self._send(
            {
                "type": "hello",
                "protocol": wire.PROTOCOL_VERSION,
                "device": self.hub.engine.device_description,
                "server": self.hub.where,
                "models": self.hub.catalog.names(),
            }
        )
        writer = asyncio.create_task(self._write())
        try:
            while True:
                text = await self.ws.receive_text()
                await self._handle(text)
        except WebSocketDisconnect:
            pass
        finally:
            writer.cancel()
            cancelled = self.hub.cancel_owner(self.owner)
            if cancelled:
                log.info("client %s went away; cancelled %d job(s)", self.client, cancelled)

    def _greet(self, hello: object) -> bool:
        if not isinstance(hello, dict) or hello.get("op") != "hello":
            return False
        if hello.get("protocol") != wire.PROTOCOL_VERSION:
            return False
        client = hello.get("client")
        # The client's id is its own secret: a reconnecting client keeps its jobs' ids.
        ident = client if isinstance(client, str) and _CLIENT_ID.match(client) else None
        self.owner = "ws:" + (ident or secrets.token_urlsafe(16))
        return True

    async def _handle(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return self.outbox.push(("msg", {"type": "error", "message": "not JSON"}))
        op = message.get("op") if isinstance(message, dict) else None
        ref = message.get("ref") if isinstance(message, dict) else None
        if not isinstance(ref, int) or isinstance(ref, bool):
            return self.outbox.push(("msg", {"type": "error", "message": "ref must be a number"}))
        if op == "submit":
            await self._submit(ref, message.get("request"))
        elif op == "cancel":
            public = self.publics.get(ref)
            if public is not None:
                self.hub.cancel(public, self.owner)
        else:
            self.outbox.push(("msg", {"type": "error", "message": f"unknown op {op!r}"}))

    async def _submit(self, ref: int, data: object) -> None:
        if not self.limiter.allow(self.client):
            return self._reject(ref, "bad_input", "Too many requests from you; slow down.")
        if len(self.hub.live_jobs(self.owner)) >= self.limits.max_live_jobs:
            return self._reject(
                ref,
                "bad_input",
                f"You already have {self.limits.max_live_jobs} jobs waiting or running on "
                "this server; wait for some to finish.",
            )
        try:
            request = await asyncio.to_thread(
                wire.request_from_dict,
                data,
                resolve_job=lambda public: self.hub.internal_of(public, self.owner),
            )
            # No await between submit and the mapping: the job's events are queued onto
            # this loop and run after it, so they always find their ref.
            public = self.hub.submit(request, self.owner, self._sink)
        except (EngineError, WireError) as exc:
            kind, text = failure_of(exc)
            return self._reject(ref, kind.value, text)
        self.refs[public] = ref
        self.publics[ref] = public
        self.outbox.push(("msg", {"type": "accepted", "ref": ref, "job": public}))

    def _reject(self, ref: int, kind: str, message: str) -> None:
        self.outbox.push(
            ("msg", {"type": "rejected", "ref": ref, "error": kind, "message": message})
        )

    def _sink(self, public: str, event: Event) -> None:
        self.outbox.push_threadsafe(("event", (public, event)))

    async def _write(self) -> None:
        while True:
            kind, value = await self.outbox.get()
            if kind == "msg":
                await self._send(value)
                continue
            public, event = value
            data = await asyncio.to_thread(
                wire.event_to_dict,
                event,
                public,
                job_ref=self.hub.public_of,
                include_detail=self.limits.include_detail,
            )
            await self._send({"type": "event", "ref": self.refs.get(public), "event": data})

    async def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.ws.send_text(json.dumps(message))

    async def _close(self, code: int) -> None:
        with contextlib.suppress(RuntimeError):
            await self.ws.close(code)
