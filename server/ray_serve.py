"""Ray Serve: a deployment whose replicas each own one Engine (one device), and deploy().

Requests name their model as Ray Serve's multiplexed model id, so the router prefers a
replica that already has that model loaded (one model per replica: a second model
would replace the first in the engine anyway). generate() is a streaming method: it
yields engine.wire event dicts as the replica's engine emits them, and when the caller
cancels the stream (or goes away) the replica cancels the job, which stops within a
step. Replicas scale with the number of ongoing requests (autoscaling_config).

Continuing a run from one of its steps works on any replica: before a job's last event
the replica yields the job's trajectory (its per-step latents, a few MB at most) as a
TRAJECTORY item, the caller keeps the newest few, and a continue carries its source
trajectory along, which the replica running it adopts into its own engine.

`serve run server.ray_serve:app` (or `serve run server.ray_serve:build_app replicas=4
gpus=1`) deploys the engines on a running Ray cluster; `diffusiondesk-server --ray
ADDRESS` then serves them to clients (it uses an application already running under
APP_NAME instead of deploying its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from ray import serve

from engine import wire
from engine.api import TERMINAL_KINDS, Cancelled, EngineLike, Event, Finished, Started
from server.ray_engine import TRAJECTORY

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

    async def generate(
        self, request: dict[str, Any], source: Any = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Run one job, yielding its events as wire dicts (and, before a Finished or
        Cancelled, its trajectory). `source`: the trajectory a continue starts from."""
        await self.get_model(serve.get_multiplexed_model_id())
        resolve: Callable[[object], int] = _no_resume
        if source is not None:
            adopted = self.engine.adopt_trajectory(source)  # type: ignore[attr-defined]
            resolve = lambda _ref: adopted  # noqa: E731
        r = wire.request_from_dict(request, resolve_job=resolve)
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
                if isinstance(event, Finished | Cancelled):
                    trajectory = self.engine.trajectory(job)  # type: ignore[attr-defined]
                    if trajectory is not None:
                        yield {"type": TRAJECTORY, "trajectory": trajectory}
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
        f"job {ref}'s steps did not come with the request to continue it; run it again"
    )


def local_engine(device: str = "auto", dtype: str = "auto") -> EngineLike:
    """The engine each replica owns, on the device Ray gave it."""
    from engine.worker import Engine

    return Engine(device=device, dtype=dtype)


def application(
    *,
    replicas: int = 2,
    autoscale: bool = True,
    engine_factory: EngineFactory = default_engine,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
) -> Any:
    """The Serve application: replicas (autoscaled up to `replicas`) of EngineReplica."""
    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus}}
    if autoscale:
        options["autoscaling_config"] = autoscaling(replicas)
    else:
        options["num_replicas"] = replicas
    return EngineReplica.options(**options).bind(engine_factory)  # type: ignore[attr-defined]


BUILD_ARGS = ("replicas", "autoscale", "cpus", "gpus", "device", "dtype", "engine")


def build_app(args: dict[str, str]) -> Any:
    """What `serve run server.ray_serve:build_app replicas=4 gpus=1 device=cuda` builds.

    replicas: the most replicas (2); autoscale: true/false (true; false runs exactly
    `replicas`); cpus, gpus: per replica (1, 0); device, dtype: the engine's (auto);
    engine: "module:function" returning an engine, for tests and custom set-ups.
    Raises ValueError with one sentence for an argument it cannot use."""
    unknown = sorted(set(args) - set(BUILD_ARGS))
    if unknown:
        raise ValueError(
            f"unknown argument {', '.join(unknown)}; the arguments are {', '.join(BUILD_ARGS)}"
        )
    replicas = int(_number(args, "replicas", 2, minimum=1, whole=True))
    autoscale_text = str(args.get("autoscale", "true")).strip().lower()
    if autoscale_text not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"autoscale must be true or false, got {autoscale_text!r}")
    factory: EngineFactory
    if args.get("engine"):
        factory = _named_factory(str(args["engine"]))
    else:
        factory = functools.partial(
            local_engine, str(args.get("device", "auto")), str(args.get("dtype", "auto"))
        )
    return application(
        replicas=replicas,
        autoscale=autoscale_text in ("true", "1", "yes"),
        engine_factory=factory,
        num_cpus=_number(args, "cpus", 1.0, minimum=0),
        num_gpus=_number(args, "gpus", 0.0, minimum=0),
    )


def _number(
    args: dict[str, str], name: str, default: float, *, minimum: float, whole: bool = False
) -> float:
    text = str(args.get(name, default)).strip()
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ValueError(f"{name} must be {kind}, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, got {text}")
    return value


def _named_factory(spec: str) -> EngineFactory:
    module_name, _, function = spec.partition(":")
    if not module_name or not function:
        raise ValueError(f"engine must look like module:function, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"engine {spec!r} cannot be found: {exc}") from None
    if not callable(factory):
        raise ValueError(f"engine {spec!r} is not a function")
    return factory  # type: ignore[no-any-return]


app = build_app({})
"""`serve run server.ray_serve:app`: the default application (2 replicas, autoscaled)."""


GONE_STATES = ("NOT_STARTED", "DELETING", "DEPLOY_FAILED")


def running_handle() -> Any | None:
    """The handle of a diffusiondesk application already running on the connected
    cluster (started by `serve run`, under any application name), or None."""
    try:
        applications = serve.status().applications
    except Exception:  # Serve not started on this cluster
        return None
    names = [APP_NAME] + sorted(n for n in applications if n != APP_NAME)
    for name in names:
        found = applications.get(name)
        # A recovering application (DEPLOYING, UNHEALTHY after a replica died) is
        # still the one to use: deploying over it would replace someone's serve run.
        state = getattr(found, "status", "")
        if found is None or str(getattr(state, "value", state)) in GONE_STATES:
            continue
        if DEPLOYMENT in found.deployments:
            return serve.get_app_handle(name)
    return None


def deploy(
    *,
    address: str | None = None,
    replicas: int = 2,
    autoscale: bool = True,
    engine_factory: EngineFactory = default_engine,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    init_options: dict[str, Any] | None = None,
    join_running: bool = False,
) -> tuple[Any, bool]:
    """Start (or join) Ray and return (the deployment's handle, whether we deployed it).

    address None starts a local Ray instance; "auto" or "ray://host:10001" joins one.
    join_running: use the application `serve run` already started there, if any."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, **(init_options or {}))
    if join_running:
        handle = running_handle()
        if handle is not None:
            return handle, False
    # Clients reach the cluster only through diffusiondesk-server (token, limits), never
    # through Ray's own HTTP proxy.
    serve.start(proxy_location="Disabled")
    built = application(
        replicas=replicas,
        autoscale=autoscale,
        engine_factory=engine_factory,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
    return serve.run(built, name=APP_NAME, route_prefix=None), True
