"""RemoteEngine: the EngineLike interface over the network, for a diffusiondesk-server.

The window and the CLI drive it exactly as they drive the local Engine: submit returns
a job id at once, events arrive on listeners (from this client's network thread), cancel
reaches the server's worker within a step. It speaks the streaming channel described in
server/stream.py with the records of engine/wire.py.

A lost connection ends every job the server had with Failed(CONNECTION) and the reason,
then reconnects with backoff; jobs submitted while disconnected wait for the next
connection attempt and fail with the reason if it fails. No torch, no Qt.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from engine import wire
from engine.api import (
    TERMINAL_KINDS,
    Cancelled,
    ErrorKind,
    Event,
    Failed,
    GenerationRequest,
    Step,
)
from engine.job_results import check_submission, settle, wait_for_result
from engine.listeners import Listeners
from engine.wire import WireError

log = logging.getLogger(__name__)

STREAM_PATH = "/v1/stream"
TOKEN_ENV = "DIFFUSIONDESK_TOKEN"
KEEP_RESULTS = 64  # ended jobs whose terminal event wait() can still return
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a batch of large PNGs with its trajectory

StatusListener = Callable[[bool, str], None]
"""status(connected, message): the link came up, or went down and why."""


def stream_url(url: str) -> str:
    """The WebSocket address for a server location: "http://host:port", "https://...",
    "ws://...", "wss://..." or "host:port"."""
    text = url.strip()
    if "://" not in text:
        text = "ws://" + text
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(
            f"the engine location must start with http://, https://, ws:// or wss://, got {url!r}"
        )
    if not parts.hostname:
        raise ValueError(f"the engine location {url!r} has no host name")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"the engine location {url!r} has a bad port number") from None
    path = parts.path.rstrip("/")
    if not path.endswith(STREAM_PATH):
        path += STREAM_PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


@dataclass(eq=False)
class _Job:
    id: int
    request: GenerationRequest
    # new -> to_send -> sent -> ended; "new" waits for a connection
    state: str = "new"
    public: str | None = None
    steps_done: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    result: Event | None = None


class RemoteEngine:
    """Implements api.EngineLike against a diffusiondesk-server. Thread-safe."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        connect_timeout: float = 10.0,
        max_backoff: float = 5.0,
        client_id: str | None = None,
    ) -> None:
        self.url = stream_url(url)
        self.host = urlsplit(self.url).netloc
        self._token = token
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        # Our secret on the server: jobs are visible to this id only.
        self._client = client_id or secrets.token_urlsafe(24)
        self._lock = threading.Lock()
        self._listeners: Listeners[[Event]] = Listeners()
        self._status_listeners: Listeners[[bool, str]] = Listeners("a connection status listener")
        self._jobs: OrderedDict[int, _Job] = OrderedDict()
        self._by_public: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._issued = 0
        self._sendq: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._ws: Any = None
        self._closed = threading.Event()
        self._device = f"remote {self.host} (connecting)"
        self.models: list[str] = []
        self.connection_error = ""
        self._connected = threading.Event()
        self._reader = threading.Thread(target=self._run, name="remote-engine-io", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="remote-engine-send")
        self._sender.daemon = True
        self._reader.start()
        self._sender.start()

    # ------------------------------------------------------------------ EngineLike

    @property
    def device_description(self) -> str:
        return self._device

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.remove(listener)

    def add_status_listener(self, listener: StatusListener) -> None:
        self._status_listeners.add(listener)

    def submit(self, request: GenerationRequest) -> int:
        with self._lock:
            check_submission(request, self._closed.is_set())
            job = _Job(next(self._ids), request)
            self._issued = job.id
            self._jobs[job.id] = job
            if self._ws is not None:
                job.state = "to_send"
                self._sendq.put(("submit", job))
        return job.id

    def cancel(self, job_id: int) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state == "ended":
                return False
            if job.state == "sent":
                self._sendq.put(("cancel", job.id))
                return True
            job.state = "ended"
        self._finish(job, Cancelled(job.id, 0))
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            live = [j for j in self._jobs.values() if j.state != "ended"]
            for job in live:
                job.state = "ended"
            ws = self._ws
        for job in live:  # the server cancels a departed client's jobs itself
            self._finish(job, Cancelled(job.id, job.steps_done))
        self._sendq.put(None)
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        self._reader.join(timeout)
        self._sender.join(timeout)

    def wait(self, job_id: int, timeout: float | None = None) -> Event | None:
        """The job's terminal event (Finished, Cancelled or Failed), or None on timeout."""
        return wait_for_result(
            self._lock, self._jobs, job_id, timeout, issued=self._issued, kept=KEEP_RESULTS
        )

    def generate(self, request: GenerationRequest, timeout: float | None = None) -> Event | None:
        return self.wait(self.submit(request), timeout)

    # ------------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        self._listeners.emit(event)

    def _finish(self, job: _Job, event: Event) -> None:
        gone = settle(job, event, self._emit, self._lock, self._jobs, KEEP_RESULTS)
        with self._lock:
            for record in gone:
                if record.public is not None:
                    self._by_public.pop(record.public, None)

    def _status(self, connected: bool, message: str) -> None:
        self._status_listeners.emit(connected, message)

    # ------------------------------------------------------------------ network thread

    def _run(self) -> None:
        backoff = 0.25
        while not self._closed.is_set():
            served = False
            try:
                with self._open() as ws:
                    self._greet(ws)
                    served = True
                    backoff = 0.25
                    reason = self._serve(ws)
            except Exception as exc:  # every way a connection can fail or end
                reason = _describe(exc)
            if served:
                self._lost(reason)
            else:
                self._attempt_failed(reason)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _open(self) -> Any:
        try:
            from websockets.sync.client import connect
        except ImportError:
            raise RuntimeError(
                "the 'websockets' package is missing; install diffusiondesk[server]"
            ) from None
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        loopback = urlsplit(self.url).hostname in ("127.0.0.1", "::1", "localhost")
        return connect(
            self.url,
            additional_headers=headers,
            open_timeout=self._connect_timeout,
            close_timeout=2,
            max_size=MAX_MESSAGE_BYTES,
            proxy=None if loopback else True,
        )

    def _greet(self, ws: Any) -> None:
        ws.send(
            json.dumps({"op": "hello", "protocol": wire.PROTOCOL_VERSION, "client": self._client})
        )
        hello = json.loads(ws.recv(timeout=self._connect_timeout))
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            raise ConnectionError("the server did not greet us (is it a DiffusionDesk server?)")
        where = hello.get("server") or self.host
        self._device = f"{hello.get('device', 'unknown device')} on {where}"
        self.models = [str(m) for m in hello.get("models", [])]

    def _serve(self, ws: Any) -> str:
        """Receive until the connection ends; returns why it ended."""
        with self._lock:
            self._ws = ws
            self._connected.set()
            self.connection_error = ""
            for job in self._jobs.values():
                if job.state == "new":
                    job.state = "to_send"
                    self._sendq.put(("submit", job))
        self._status(True, f"connected to {self.host}")
        try:
            while True:
                text = ws.recv()
                try:
                    message = json.loads(text)
                except ValueError:
                    log.warning("the server sent something that is not JSON; ignored")
                    continue
                self._handle(message)
        except Exception as exc:
            return _describe(exc)
        finally:
            with self._lock:
                self._ws = None
                self._connected.clear()

    def _handle(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        with self._lock:
            job = self._jobs.get(message.get("ref"))  # type: ignore[arg-type]
        if kind == "error":
            log.warning("the server said: %s", message.get("message"))
        if job is None or job.state == "ended":
            return
        if kind == "accepted":
            with self._lock:
                job.public = str(message.get("job"))
                self._by_public[job.public] = job.id
        elif kind == "rejected":
            try:
                error = ErrorKind(str(message.get("error")))
            except ValueError:
                error = ErrorKind.INTERNAL
            self._end(job, Failed(job.id, error, str(message.get("message", "refused"))))
        elif kind == "event":
            try:
                event = wire.event_from_dict(
                    message.get("event"),
                    job.id,
                    resolve_job=self._local_of,
                    original=job.request,
                )
            except WireError as exc:
                event = Failed(job.id, ErrorKind.INTERNAL, f"The server sent a bad event: {exc}")
            if isinstance(event, Step):
                job.steps_done = event.step
            if event.kind in TERMINAL_KINDS:
                self._end(job, event)
            else:
                self._emit(event)

    def _end(self, job: _Job, event: Event) -> None:
        with self._lock:
            if job.state == "ended":
                return
            job.state = "ended"
        self._finish(job, event)

    def _local_of(self, public: wire.JobRef) -> int:
        with self._lock:
            return self._by_public.get(str(public), 0)

    def _public_of(self, local: int) -> str:
        with self._lock:
            job = self._jobs.get(local)
            public = job.public if job is not None else None
        if public is None:
            raise WireError(f"job {local} never reached the server, so it cannot be continued")
        return public

    def _attempt_failed(self, reason: str) -> None:
        message = f"Cannot reach the DiffusionDesk server at {self.host}: {reason}."
        first = self.connection_error != message
        self.connection_error = message
        with self._lock:
            waiting = [j for j in self._jobs.values() if j.state == "new"]
            for job in waiting:
                job.state = "ended"
        for job in waiting:
            self._finish(job, Failed(job.id, ErrorKind.CONNECTION, message))
        if first:
            self._status(False, message)

    def _lost(self, reason: str) -> None:
        if self._closed.is_set():
            return
        message = (
            f"Lost the connection to the DiffusionDesk server at {self.host} ({reason}); "
            "the job did not finish. Reconnecting…"
        )
        self.connection_error = message
        with self._lock:
            lost = [j for j in self._jobs.values() if j.state == "sent"]
            for job in lost:
                job.state = "ended"
            for job in self._jobs.values():
                if job.state == "to_send":  # never left this machine: send it next time
                    job.state = "new"
        for job in lost:
            self._finish(job, Failed(job.id, ErrorKind.CONNECTION, message))
        self._status(False, message)

    # ------------------------------------------------------------------ sending thread

    def _send_loop(self) -> None:
        while True:
            item = self._sendq.get()
            if item is None:
                return
            op, value = item
            if op == "submit":
                self._send_submit(value)
            else:
                with self._lock:
                    ws = self._ws
                self._send(ws, {"op": "cancel", "ref": value})

    def _send_submit(self, job: _Job) -> None:
        # Encoding (PNG of the init image and mask) happens here, off the caller's thread.
        try:
            data = wire.request_to_dict(job.request, job_ref=self._public_of)
        except WireError as exc:
            self._end(job, Failed(job.id, ErrorKind.BAD_INPUT, f"Cannot send the request: {exc}"))
            return
        with self._lock:
            if job.state != "to_send":
                return  # cancelled, or the connection went meanwhile
            ws = self._ws
            if ws is None:
                job.state = "new"
                return
            job.state = "sent"
        self._send(ws, {"op": "submit", "ref": job.id, "request": data})

    @staticmethod
    def _send(ws: Any, message: dict[str, Any]) -> None:
        if ws is None:
            return
        # A failed send shows up as a closed connection on the receiving thread.
        with contextlib.suppress(Exception):
            ws.send(json.dumps(message))


def _describe(exc: BaseException) -> str:
    """One phrase for why a connection failed or ended."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401 or status == 403:
        return f"the server refused the access token (HTTP {status}); check the token"
    if status is not None:
        return f"the server answered HTTP {status}"
    name = type(exc).__name__
    close = getattr(exc, "rcvd", None)
    if getattr(close, "code", None) == 1009:
        return "the server refused a message over its size limit (a picture too large?)"
    if name in ("ConnectionClosedOK", "ConnectionClosedError", "ConnectionClosed"):
        return "the server closed the connection"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is diffusiondesk-server running there?)"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc) or name
    return text[:200]
