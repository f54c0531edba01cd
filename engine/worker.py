"""Engine: one long-lived worker thread that owns every torch object, fed by a queue."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from engine import canvas_jobs, families, upscale_options, upscale_runs, validation
from engine.api import (
    Cancelled,
    EngineError,
    ErrorKind,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    JobCancelled,
    ModelInfo,
    ModelLoading,
    Queued,
    Started,
    Step,
)
from engine.forward import LatentCache
from engine.job_results import check_submission, ended_beyond, settle, wait_for_result
from engine.listeners import Listeners
from engine.memory import free_memory
from engine.out_of_memory import is_out_of_memory
from engine.out_of_memory import suggestion as out_of_memory_suggestion
from engine.plan import Inputs, Plan, check_inputs, make_plan
from engine.protocols import ModelProvider
from engine.sampling import PipelineRunner, RunResult, StepReport, Trajectory

if TYPE_CHECKING:
    from engine.models import LoadedModel

log = logging.getLogger(__name__)

KEEP_TRAJECTORIES = 8  # finished jobs whose per-step latents stay available for resume
KEEP_RESULTS = 32  # finished jobs whose terminal event wait() can still return
# Of those, the newest whose Finished still carries its step previews: a 512-pixel
# inpaint's previews are tens of MB, and older results only need their images.
KEEP_RESULT_PREVIEWS = 4


@dataclass(eq=False)
class _Job:
    id: int
    request: GenerationRequest
    state: str = "queued"  # queued -> running -> done
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    result: Event | None = None
    steps_done: int = 0


def lower_thread_priority(niceness: int) -> None:
    """Raise the calling thread's nice value where the OS has per-thread priorities
    (Linux); threads it starts later, such as torch's OpenMP pool, inherit it."""
    if niceness <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # a preference; never a reason to fail
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)


class Engine:
    """Implements api.EngineLike. All public methods are safe to call from any thread."""

    def __init__(
        self,
        models: ModelProvider | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        allow_pickle: bool = False,
        max_pixels: int = validation.MAX_PIXELS,
        keep_trajectories: int = KEEP_TRAJECTORIES,
        niceness: int = 0,
        backend: str | None = None,
        compile_unet: bool = False,
    ) -> None:
        """niceness > 0 lowers the worker thread's CPU priority (and that of the torch
        threads it starts), so that a window's thread wins the CPU when it wakes up.
        backend: "auto", "torch", "openvino" or "openvino-int8" (None:
        $DIFFUSIONDESK_BACKEND or "auto");
        compile_unet: torch.compile the UNet (see engine/backends)."""
        from engine.backends.choice import Accelerator

        self._accelerator = Accelerator(
            backend or os.environ.get("DIFFUSIONDESK_BACKEND", "auto"), compile_unet
        )
        if models is None:
            from engine.models import ModelManager

            models = ModelManager(device=device, dtype=dtype, allow_pickle=allow_pickle)
        self._models: ModelProvider = models
        # Upscaler model files follow the model manager's pickle consent.
        self._allow_pickle = bool(getattr(models, "allow_pickle", allow_pickle))
        self._max_pixels = max_pixels
        self._keep_trajectories = keep_trajectories
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._listeners: Listeners[[Event]] = Listeners()
        self._jobs: OrderedDict[int, _Job] = OrderedDict()
        self._pending: list[int] = []
        self._ids = itertools.count(1)
        self._last_id = 0
        self._closed = False
        # Worker-thread state.
        self._runner = PipelineRunner()
        self._runner.controls.allow_pickle = self._allow_pickle  # T2I adapters' .pth files
        self._latent_cache = LatentCache()  # the forward process's last picture
        self._trajectories: OrderedDict[int, Trajectory] = OrderedDict()
        self._last_model: str | None = None
        self._niceness = niceness
        self._thread = threading.Thread(target=self._loop, name="diffusiondesk-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public

    @property
    def device_description(self) -> str:
        return self._models.device_description

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.remove(listener)

    def submit(self, request: GenerationRequest) -> int:
        with self._lock:
            check_submission(request, self._closed)
            job = _Job(next(self._ids), request)
            self._last_id = job.id
            self._jobs[job.id] = job
            position = len(self._pending)
            self._pending.append(job.id)
        self._emit(Queued(job.id, position))
        self._queue.put(job)
        return job.id

    def cancel(self, job_id: int) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state == "done":
                return False
            job.cancel.set()
            if job.state == "running":
                return True
            job.state = "done"
            self._pending.remove(job_id)
        self._finish(job, Cancelled(job_id, 0))
        self._announce_positions()
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting = list(self._pending)
            running = [j for j in self._jobs.values() if j.state == "running"]
        for job_id in waiting:
            self.cancel(job_id)
        for job in running:
            job.cancel.set()
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the engine's worker did not stop within %.1f s", timeout)

    def wait(self, job_id: int, timeout: float | None = None) -> Event | None:
        """The job's terminal event (Finished, Cancelled or Failed), or None on timeout."""
        return wait_for_result(
            self._lock, self._jobs, job_id, timeout, issued=self._last_id, kept=KEEP_RESULTS
        )

    def generate(self, request: GenerationRequest, timeout: float | None = None) -> Event | None:
        """Submit and wait: for scripts, the command line and tests."""
        return self.wait(self.submit(request), timeout)

    def trajectory(self, job_id: int) -> Trajectory | None:
        """A recent job's per-step latents (CPU tensors) and previews, for replay."""
        return self._trajectories.get(job_id)

    def adopt_trajectory(self, trajectory: Trajectory) -> int:
        """Keep a trajectory another engine made (a Ray replica continuing a run that ran
        on another replica); returns the id a ResumeFrom names it by (never a job's)."""
        with self._lock:
            source_id = next(self._ids)
            self._last_id = source_id
            self._store_trajectory(source_id, trajectory)
        return source_id

    # ------------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        self._listeners.emit(event)

    def _announce_positions(self) -> None:
        """A job left the queue: every job behind it moved up, so say where each one is."""
        with self._lock:
            waiting = list(self._pending)
        for position, job_id in enumerate(waiting):
            self._emit(Queued(job_id, position))

    def _finish(self, job: _Job, event: Event) -> None:
        settle(job, event, self._emit, self._lock, self._jobs, KEEP_RESULTS)
        with self._lock:
            for old in ended_beyond(self._jobs, KEEP_RESULT_PREVIEWS):
                kept = self._jobs[old]
                if isinstance(kept.result, Finished) and kept.result.step_previews:
                    kept.result = replace(kept.result, step_previews=(), noisy_step_previews=())

    # ------------------------------------------------------------------ worker thread

    def _loop(self) -> None:
        lower_thread_priority(self._niceness)
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    break
                with self._lock:
                    if job.state != "queued":
                        continue  # cancelled while waiting
                    job.state = "running"
                    self._pending.remove(job.id)
                self._announce_positions()
                try:
                    self._run_guarded(job)
                except Exception:  # a bug in reporting must not end the worker
                    log.exception("job %d could not be reported", job.id)
                    if not job.done.is_set():
                        detail = traceback.format_exc()
                        with self._lock:
                            job.state = "done"
                        self._finish(
                            job, Failed(job.id, ErrorKind.INTERNAL, "Internal error.", detail)
                        )
        finally:
            self._runner.reset()
            self._latent_cache.clear()
            self._trajectories.clear()
            self._models.release()
            free_memory()

    def _run_guarded(self, job: _Job) -> None:
        event: Event
        out_of_memory = False
        try:
            event = self._run(job)
        except JobCancelled:
            event = Cancelled(job.id, job.steps_done)
        except EngineError as exc:
            event = Failed(job.id, exc.kind, exc.message, exc.detail)
        except Exception as exc:
            if is_out_of_memory(exc):
                out_of_memory = True
                r = job.request
                device = self.device_description
                event = Failed(
                    job.id,
                    ErrorKind.OUT_OF_MEMORY,
                    f"Out of memory making {r.batch_size} image(s) of {r.width}x{r.height} on "
                    f"{device}; {out_of_memory_suggestion(device)}.",
                    traceback.format_exc(),
                )
            else:
                log.exception("job %d failed", job.id)
                event = Failed(
                    job.id,
                    ErrorKind.INTERNAL,
                    f"Internal error: {type(exc).__name__}: {str(exc)[:300]}",
                    traceback.format_exc(),
                )
        if out_of_memory:  # outside the except block, so the traceback's tensors are gone
            free_memory()
        with self._lock:
            job.state = "done"
        self._finish(job, event)

    def _run(self, job: _Job) -> Finished:
        r = job.request
        start = time.perf_counter()
        # Text every later stage can encode (tokenizer, PNG chunk), then every check
        # that needs no model, before the (slow) load.
        r, notes = validation.cleaned(r)
        inputs = check_inputs(
            r, self._trajectories, max_pixels=self._max_pixels, kept=self._keep_trajectories
        )
        if not upscale_options.needs_diffusion_model(r):
            return self._enlarge_only(job, r, inputs.seeds, notes, start)
        if r.model != self._last_model:
            self._runner.reset()  # let the old model's memory go before loading another
            self._latent_cache.clear()
            self._accelerator.release()
        self._last_model = r.model
        model = self._models.get(
            r.model,
            progress=lambda stage, fraction: self._emit(
                ModelLoading(job.id, r.model, stage, fraction)
            ),
            should_cancel=job.cancel.is_set,
            files=tuple(r.model_files),
            roots=tuple(r.model_folders),
        )
        if r.forward is not None or (r.expand is not None and r.resume is None):
            return self._run_canvas_job(job, r, inputs, model, start)
        plan = make_plan(r, model, inputs)
        # OpenVINO conversion and compilation or torch.compile, as loading stages.
        session = self._accelerator.prepare(
            model,
            plan.filled_request(),
            len(plan.seeds),
            progress=lambda stage, fraction: self._emit(
                ModelLoading(job.id, r.model, stage, fraction)
            ),
            should_cancel=job.cancel.is_set,
        )
        loaded = time.perf_counter()
        if job.cancel.is_set():
            raise JobCancelled()
        device = self.device_description + (f", {session.label}" if session.label else "")
        device += "".join(f", {note}" for note in getattr(model, "notes", ()))
        flow = families.profile(model.family).flow
        total = upscale_options.total_steps(r, plan.total, flow)
        self._emit(
            Started(
                job.id,
                total,
                r.model,
                device,
                plan.seeds,
                family=model.family,
                variant=model.variant,
                model_label=model.label,
            )
        )

        def on_step(step: int, of: int, elapsed: float, x0: np.ndarray, noisy: np.ndarray) -> None:
            job.steps_done = step
            self._emit(Step(job.id, step, of, elapsed, x0, noisy))

        with session:
            result = upscale_runs.run(
                self._runner,
                plan,
                model,
                on_step=on_step,
                should_cancel=job.cancel.is_set,
                keep=lambda trajectory: self._keep(job.id, trajectory),
                allow_pickle=self._allow_pickle,
            )
        end = time.perf_counter()
        trajectory = result.trajectory
        return Finished(
            job_id=job.id,
            images=tuple(result.images),
            seeds=plan.seeds,
            request=plan.filled_request(),
            timings={
                "load": loaded - start,
                "sampling": result.sampling_seconds,
                "decode": result.decode_seconds,
                "previews": result.callback_seconds,  # part of "sampling"
                "total": end - start,
            },
            step_previews=tuple(trajectory.previews),
            noisy_step_previews=tuple(trajectory.noisy_previews),
            warnings=(*notes, *session.warnings, *result.warnings),
            model_info=ModelInfo(str(model.family), model.variant, str(plan.guidance)),
        )

    def _enlarge_only(
        self,
        job: _Job,
        r: GenerationRequest,
        seeds: tuple[int, ...],
        notes: list[str],
        start: float,
    ) -> Finished:
        """An upscale with no SD pass: no diffusion model is loaded."""
        self._emit(Started(job.id, upscale_options.total_steps(r, 1), r.model, "upscaler", seeds))

        def on_step(step: int, of: int, elapsed: float, x0: np.ndarray, noisy: np.ndarray) -> None:
            job.steps_done = step
            self._emit(Step(job.id, step, of, elapsed, x0, noisy))

        result = upscale_runs.pixel_upscale(
            r,
            on_step=on_step,
            should_cancel=job.cancel.is_set,
            allow_pickle=self._allow_pickle,
            device=getattr(self._models, "device", "cpu"),
        )
        previews = result.trajectory.previews
        return Finished(
            job_id=job.id,
            images=tuple(result.images),
            seeds=seeds,
            request=r.with_changes(seed=seeds[0], batch_size=1),
            timings={
                "load": 0.0,
                "sampling": result.sampling_seconds,
                "decode": 0.0,
                "previews": 0.0,
                "total": time.perf_counter() - start,
            },
            step_previews=tuple(previews),
            noisy_step_previews=tuple(previews),
            warnings=tuple(notes),
        )

    def _run_canvas_job(
        self, job: _Job, r: GenerationRequest, inputs: Inputs, model: LoadedModel, start: float
    ) -> Finished:
        """Outpainting and the forward process (engine/canvas_jobs.py): several runs or none."""

        def run_plan(
            plan: Plan, on_step: StepReport, keep: Callable[[Trajectory], None]
        ) -> RunResult:
            session = self._accelerator.prepare(
                model,
                plan.filled_request(),
                len(plan.seeds),
                progress=lambda stage, fraction: self._emit(
                    ModelLoading(job.id, r.model, stage, fraction)
                ),
                should_cancel=job.cancel.is_set,
            )
            if job.cancel.is_set():
                raise JobCancelled()
            with session:
                return self._runner.run(
                    plan, model, on_step=on_step, should_cancel=job.cancel.is_set, keep=keep
                )

        def steps_done(step: int) -> None:
            job.steps_done = step

        ctx = canvas_jobs.JobContext(
            job_id=job.id,
            model=model,
            device=self.device_description,
            started_at=start,
            loaded_at=time.perf_counter(),
            emit=self._emit,
            run_plan=run_plan,
            keep=lambda trajectory: self._keep(job.id, trajectory),
            should_cancel=job.cancel.is_set,
            set_steps_done=steps_done,
            latent_cache=self._latent_cache,
        )
        if job.cancel.is_set():
            raise JobCancelled()
        if r.forward is not None:
            return canvas_jobs.run_forward(ctx, r, inputs)
        return canvas_jobs.run_expand(ctx, r, inputs)

    def _keep(self, job_id: int, trajectory: Trajectory) -> None:
        with self._lock:
            self._store_trajectory(job_id, trajectory)

    def _store_trajectory(self, job_id: int, trajectory: Trajectory) -> None:
        """Call with the lock held: adopt_trajectory runs on other threads."""
        self._trajectories[job_id] = trajectory
        while len(self._trajectories) > self._keep_trajectories:
            self._trajectories.popitem(last=False)
