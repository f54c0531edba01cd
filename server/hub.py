"""JobHub: the one listener on the served engine; it names jobs and routes their events.

Every remote job gets an unguessable public id and an owner (one client). Fields that
name files (the model, the model folders, a VAE) are resolved inside the server's own
folders, never taken from the client as paths. Events reach
only the owner's sink, with the server's own details taken out: model paths become the
model's public name, and the place a job ran ("cpu (float32) on host") is added. A client
can cancel, resume from, or even name only jobs it owns.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.api import (
    TERMINAL_KINDS,
    EngineError,
    EngineLike,
    ErrorKind,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    ModelLoading,
    Started,
)
from engine.asset_folders import AssetKind
from engine.wire import WireError
from server import request_files
from server.catalog import ModelCatalog

log = logging.getLogger(__name__)

Sink = Callable[[str, Event], None]
"""sink(public job id, event): must be quick and thread-safe (it runs on the worker)."""

KEEP_ENDED = 256  # ended jobs a client can still name (to resume from them)


@dataclass(eq=False)
class _Record:
    public: str
    internal: int
    owner: str
    model_name: str
    model_source: str
    sink: Sink
    client_fields: dict[str, Any] = field(default_factory=dict)  # as the client sent them
    ended: bool = False


class JobHub:
    """Submits on behalf of clients and routes each event to the job's owner only."""

    def __init__(self, engine: EngineLike, catalog: ModelCatalog, *, where: str = "") -> None:
        self.engine = engine
        self.catalog = catalog
        self.where = where
        # Re-entrant: the engine emits Queued inside submit, on the submitting thread.
        self._lock = threading.RLock()
        self._by_internal: dict[int, _Record] = {}
        self._by_public: OrderedDict[str, _Record] = OrderedDict()
        self._submitting = 0
        self._orphans: dict[int, list[Event]] = {}
        engine.add_listener(self._on_event)

    # ------------------------------------------------------------------ clients

    def submit(self, request: GenerationRequest, owner: str, sink: Sink) -> str:
        """Queue a client's job and return its public id; EngineError if the model is not
        one the server offers."""
        server_fields, client_fields = self._server_side(request)
        source = server_fields["model"]
        with self._lock:
            self._submitting += 1
            try:
                internal = self.engine.submit(request.with_changes(**server_fields))
            finally:
                self._submitting -= 1
            record = _Record(
                secrets.token_urlsafe(16),
                internal,
                owner,
                request.model,
                source,
                sink,
                client_fields,
            )
            self._by_internal[internal] = record
            self._by_public[record.public] = record
            for event in self._orphans.pop(internal, []):
                self._deliver(record, event)
            self._prune()
        return record.public

    def _server_side(self, request: GenerationRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """(fields the server sets, the client's values of them): every field that names
        a file or folder is chosen here, from the server's own folders."""
        server: dict[str, Any] = {"model": self.catalog.resolve(request.model)}
        client: dict[str, Any] = {"model": request.model}
        server["model_folders"] = tuple(str(r) for r in self.catalog.roots)
        client["model_folders"] = request.model_folders
        if request.vae:
            server["vae"] = self.catalog.resolve_asset(AssetKind.VAE, request.vae)
            client["vae"] = request.vae
        if request.model_files:
            server["model_files"] = tuple(self._companion(n) for n in request.model_files)
            client["model_files"] = request.model_files
        more_server, more_client = request_files.server_fields(request, self.catalog)
        return server | more_server, client | more_client

    def _companion(self, name: object) -> str:
        """A file a transformer-only model needs (a text encoder or its VAE), by name,
        from the server's folders; a path is refused."""
        try:
            return self.catalog.resolve_asset(AssetKind.TEXT_ENCODER, name)
        except EngineError as exc:
            if exc.kind != ErrorKind.MODEL:  # a path, or not text
                raise
        try:
            return self.catalog.resolve_asset(AssetKind.VAE, name)
        except EngineError as exc:
            if exc.kind != ErrorKind.MODEL:
                raise
        raise EngineError(
            ErrorKind.MODEL,
            f"This server has no text encoder or VAE called {str(name)[:80]!r}.",
        )

    def cancel(self, public: str, owner: str) -> bool:
        with self._lock:
            record = self._by_public.get(public)
            if record is None or record.owner != owner:
                return False
        return self.engine.cancel(record.internal)

    def cancel_owner(self, owner: str) -> int:
        """Cancel every job of a client that went away; returns how many were live."""
        with self._lock:
            live = [r for r in self._by_public.values() if r.owner == owner and not r.ended]
        return sum(self.engine.cancel(r.internal) for r in live)

    def internal_of(self, public: object, owner: str) -> int:
        """The engine's id of a job the owner may name (e.g. to resume from it)."""
        with self._lock:
            record = self._by_public.get(public) if isinstance(public, str) else None
            if record is None or record.owner != owner:
                raise WireError(f"there is no job {str(public)[:40]!r} of yours on this server")
            return record.internal

    def public_of(self, internal: int) -> str:
        with self._lock:
            record = self._by_internal.get(internal)
        return record.public if record is not None else ""

    def live_jobs(self, owner: str) -> list[str]:
        with self._lock:
            return [r.public for r in self._by_public.values() if r.owner == owner and not r.ended]

    # ------------------------------------------------------------------ engine side

    def _on_event(self, event: Event) -> None:
        with self._lock:
            record = self._by_internal.get(event.job_id)
            if record is None:
                if self._submitting:  # Queued, emitted before submit returned the id
                    self._orphans.setdefault(event.job_id, []).append(event)
                return
            self._deliver(record, event)

    def _deliver(self, record: _Record, event: Event) -> None:
        if event.kind in TERMINAL_KINDS:
            record.ended = True
        try:
            record.sink(record.public, self._public(record, event))
        except Exception:
            log.exception("delivering %s of job %s failed", event.kind, record.public)

    def _public(self, record: _Record, event: Event) -> Event:
        """The event as the client may see it: names, not the server's paths."""
        match event:
            case ModelLoading():
                return dataclasses.replace(event, model=record.model_name)
            case Started():
                where = f"{event.device} on {self.where}" if self.where else event.device
                return dataclasses.replace(event, model=record.model_name, device=where)
            case Finished():
                request = event.request.with_changes(**record.client_fields)
                return dataclasses.replace(event, request=request)
            case Failed():
                message = event.message.replace(record.model_source, record.model_name)
                return dataclasses.replace(event, message=message)
        return event

    def _prune(self) -> None:
        ended = [r for r in self._by_public.values() if r.ended]
        for record in ended[: max(0, len(ended) - KEEP_ENDED)]:
            del self._by_public[record.public]
            self._by_internal.pop(record.internal, None)


def failure_of(exc: EngineError | WireError) -> tuple[ErrorKind, str]:
    """(kind, message) for a request refused before it reached the engine."""
    if isinstance(exc, EngineError):
        return exc.kind, exc.message
    return ErrorKind.BAD_INPUT, f"The request is not valid: {exc}"
