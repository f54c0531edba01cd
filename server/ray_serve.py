"""Ray Serve: a deployment whose replicas each own one Engine (one device), and deploy().

Requests name their model as Ray Serve's multiplexed model id, so the router prefers a
replica that already has that model loaded (one model per replica: a second model
would replace the first in the engine anyway). generate() is a streaming method: it
yields engine.wire event dicts as the replica's engine emits them, and when the caller
cancels the stream (or goes away) the replica cancels the job, which stops within a
step. Replicas scale with the number of ongoing requests (autoscaling_config).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from ray import serve

from engine import wire
from engine.api import TERMINAL_KINDS, EngineLike, Event, Started

APP_NAME = "diffusiondesk"
DEPLOYMENT = "diffusiondesk-engine"
EngineFactory = Callable[[], EngineLike]


def default_engine() -> EngineLike:
    from engine.worker import Engine

    return Engine()


def autoscaling(max_replicas: int) -> dict[str, Any]:
    """Scale with the queue: about one ongoing job per replica, up quickly, down slowly
    (a replica's loaded model is worth keeping for a while)."""
    return {
        "min_replicas": 1,
        "max_replicas": max_replicas,
        "target_ongoing_requests": 1,
        "upscale_delay_s": 3,
        "downscale_delay_s": 120,
    }


@serve.deployment(name=DEPLOYMENT, max_ongoing_requests=16, graceful_shutdown_timeout_s=5)
class EngineReplica:
    def __init__(self, engine_factory: EngineFactory = default_engine) -> None:
        self.engine = engine_factory()
        replica = serve.get_replica_context().replica_id.unique_id
        self.where = f"replica {replica} on {socket.gethostname()}"
        self._lock = threading.RLock()  # the engine emits Queued inside submit
        self._streams: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = {}
        self._early: dict[int, list[Event]] = {}
        self._submitting = False
        self.engine.add_listener(self._on_event)

    @serve.multiplexed(max_num_models_per_replica=1)
    async def get_model(self, model_id: str) -> str:
        # The engine loads and keeps the model on its first job; registering the id
        # here is what lets the router send this model's next jobs to this replica.
        return model_id

    async def generate(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        await self.get_model(serve.get_multiplexed_model_id())
        r = wire.request_from_dict(request, resolve_job=_no_resume)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()
        with self._lock:
            self._submitting = True
            try:
                job = self.engine.submit(r)
            finally:
                self._submitting = False
            self._streams[job] = (loop, events)
            for event in self._early.pop(job, []):
                events.put_nowait(event)
        ended = False
        try:
            while not ended:
                event = await events.get()
                ended = event.kind in TERMINAL_KINDS
                yield wire.event_to_dict(self._placed(event), job)
        finally:
            with self._lock:
                self._streams.pop(job, None)
            if not ended:  # the caller cancelled the stream or went away
                self.engine.cancel(job)

    def _placed(self, event: Event) -> Event:
        if isinstance(event, Started):
            return replace(event, device=f"{event.device}, {self.where}")
        return event

    def _on_event(self, event: Event) -> None:
        with self._lock:
            stream = self._streams.get(event.job_id)
            if stream is None:
                if self._submitting:  # Queued, emitted before submit returned the id
                    self._early.setdefault(event.job_id, []).append(event)
                return
        loop, events = stream
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(events.put_nowait, event)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.engine.shutdown(5)


def _no_resume(ref: object) -> int:
    raise wire.WireError(
        "continuing from a step is not available on a Ray cluster (the steps stay on the "
        "replica that ran the job); run it again from the start"
    )


def deploy(
    *,
    address: str | None = None,
    replicas: int = 2,
    autoscale: bool = True,
    engine_factory: EngineFactory = default_engine,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    init_options: dict[str, Any] | None = None,
) -> Any:
    """Start (or join) Ray, run the application and return its deployment handle.

    address None starts a local Ray instance; "auto" or "ray://host:10001" joins one."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, **(init_options or {}))
    # Clients reach the cluster only through diffusiondesk-server (token, limits), never
    # through Ray's own HTTP proxy.
    serve.start(proxy_location="Disabled")
    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus}}
    if autoscale:
        options["autoscaling_config"] = autoscaling(replicas)
    else:
        options["num_replicas"] = replicas
    app = EngineReplica.options(**options).bind(engine_factory)  # type: ignore[attr-defined]
    return serve.run(app, name=APP_NAME, route_prefix=None)
