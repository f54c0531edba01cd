"""A scripted engine with the EngineLike surface, for the GUI's rarer paths.

It runs jobs on its own worker thread (so the bridge's thread crossing is real), emits
the same events as engine.worker.Engine, and can be told to fail, to pause before a
step, or to go slowly. Pictures are flat colours derived from the prompt; inpainting
changes only the masked pixels (as the real engine promises).

Previews follow the engine's contract (engine/api.py Step): whole pictures with the
picture's aspect ratio, in image coordinates, already composited for inpainting: the
original everywhere except the region being repainted. With "only masked area" they
come at half size, as a capped preview would, so the window has to scale them.
"""

from __future__ import annotations

import hashlib
import itertools
import queue
import threading
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from engine.api import (
    Cancelled,
    ErrorKind,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    ModelLoading,
    Queued,
    Started,
    Step,
)


def prompt_colour(prompt: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


class FakeEngine:
    def __init__(self, step_delay: float = 0.0) -> None:
        self.step_delay = step_delay
        self.device_description = "fake (float32)"
        self.submitted: list[GenerationRequest] = []
        self.fail_next: tuple[ErrorKind, str] | None = None
        # Set `gate` to hold every job after its first step until the test releases it,
        # or gates[job_id] to hold only that job.
        self.gate: threading.Event | None = None
        self.gates: dict[int, threading.Event] = {}
        # Set `loading_gate` to hold every job while its model "loads".
        self.loading_gate: threading.Event | None = None
        # model name -> (family, variant, label) that Started reports for it.
        self.families: dict[str, tuple[str, str, str]] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self._ids = itertools.count(1)
        self._queue: queue.Queue[tuple[int, GenerationRequest] | None] = queue.Queue()
        self._cancelled: set[int] = set()
        self._pending: list[int] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fake-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ EngineLike

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def submit(self, request: GenerationRequest) -> int:
        job_id = next(self._ids)
        self.submitted.append(request)
        with self._lock:
            position = len(self._pending)
            self._pending.append(job_id)
        self._emit(Queued(job_id, position))
        self._queue.put((job_id, request))
        return job_id

    def cancel(self, job_id: int) -> bool:
        with self._lock:
            if job_id not in self._pending:
                return False
            self._cancelled.add(job_id)
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._cancelled.update(self._pending)
        for gate in (self.gate, self.loading_gate, *self.gates.values()):
            if gate is not None:
                gate.set()
        self._queue.put(None)
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ worker

    def _emit(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)

    def _is_cancelled(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def _done(self, job_id: int) -> None:
        with self._lock:
            if job_id in self._pending:
                self._pending.remove(job_id)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job_id, request = item
            try:
                self._job(job_id, request)
            finally:
                self._done(job_id)

    def _job(self, job_id: int, request: GenerationRequest) -> None:
        if self._is_cancelled(job_id):
            self._emit(Cancelled(job_id, 0))
            return
        if self.fail_next is not None:
            kind, message = self.fail_next
            self.fail_next = None
            self._emit(Failed(job_id, kind, message))
            return
        self._emit(ModelLoading(job_id, request.model, "loading unet", -1.0))
        if self.loading_gate is not None:
            self.loading_gate.wait(10)
            if self._is_cancelled(job_id):
                self._emit(Cancelled(job_id, 0))
                return
        self._emit(ModelLoading(job_id, request.model, "loaded", 1.0))
        seed = request.seed if request.seed is not None else 1234
        seeds = tuple(seed + i for i in range(request.batch_size))
        total = request.steps
        if request.resume is not None:
            total = request.steps
        family, variant, label = self.families.get(request.model, ("", "", ""))
        self._emit(
            Started(
                job_id,
                total,
                request.model,
                self.device_description,
                seeds,
                family=family,
                variant=variant,
                model_label=label,
            )
        )
        final = self._final_array(request)
        previews: list[np.ndarray] = []
        noisy: list[np.ndarray] = []
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        first = 1 if request.resume is None else request.resume.step + 1
        for step in range(first, total + 1):
            if self._is_cancelled(job_id):
                self._emit(Cancelled(job_id, step - 1))
                return
            preview, noise = self._previews(request, final, step / total, rng)
            previews.append(preview)
            noisy.append(noise)
            self._emit(Step(job_id, step, total, time.perf_counter() - start, preview, noise))
            if step == first:
                for gate in (self.gate, self.gates.get(job_id)):
                    if gate is not None:
                        gate.wait(10)
            if self.step_delay:
                time.sleep(self.step_delay)
        if self._is_cancelled(job_id):
            self._emit(Cancelled(job_id, total))
            return
        image = Image.fromarray(final, "RGB")
        self._emit(
            Finished(
                job_id,
                tuple(image.copy() for _ in seeds),
                seeds,
                request.with_changes(seed=seed),
                {"load": 0.0, "sampling": time.perf_counter() - start, "total": 0.01},
                tuple(previews),
                tuple(noisy),
            )
        )

    @staticmethod
    def _previews(
        request: GenerationRequest, final: np.ndarray, t: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(x0 estimate, noisy latent) as whole pictures, composited like the engine's."""
        noise = rng.integers(0, 256, final.shape, dtype=np.uint8)
        estimate = (final * t + noise * (1 - t)).astype(np.uint8)
        if request.mask is not None and request.init_image is not None:
            base = np.asarray(request.init_image.convert("RGB"))
            repaint = (np.asarray(request.mask.convert("L")) >= 128)[:, :, None]
            estimate = np.where(repaint, estimate, base)
            noise = np.where(repaint, noise, base)
        if request.inpaint_only_masked:
            half = (max(1, request.width // 2), max(1, request.height // 2))
            estimate = np.asarray(Image.fromarray(estimate).resize(half, Image.Resampling.NEAREST))
            noise = np.asarray(Image.fromarray(noise).resize(half, Image.Resampling.NEAREST))
        return estimate, noise

    @staticmethod
    def _final_array(request: GenerationRequest) -> np.ndarray:
        colour = np.array(prompt_colour(request.prompt), np.uint8)
        painted = np.empty((request.height, request.width, 3), np.uint8)
        painted[:] = colour
        if request.init_image is None:
            return painted
        base = np.asarray(request.init_image.convert("RGB")).copy()
        if request.expand is not None:  # the picture in its place, the new area painted
            e = request.expand
            painted[e.top : e.top + base.shape[0], e.left : e.left + base.shape[1]] = base
            return painted
        if request.mask is None:
            return ((base.astype(np.uint16) + painted) // 2).astype(np.uint8)
        keep = np.asarray(request.mask.convert("L")) < 128
        return np.where(keep[:, :, None], base, painted)
