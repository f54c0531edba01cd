"""The one place where engine events cross from the worker thread into the GUI thread.

The engine calls our listener on its worker thread. The listener only appends the
event to a lock-protected list (a newer Step of a job replaces an undelivered older
one: stale previews are dropped, never queued) and pokes the GUI thread through a
queued signal. The GUI thread delivers the pending events, in order, on one signal
(`eventArrived`; guiapp.jobs.JobQueue.handle_event reads them), step previews at most once
per frame.

The window can switch engines while it runs (`replace`): the old engine stops on a
helper thread, its jobs end as usual, and job ids stay unique across engines (each
engine's ids are shifted past every id the window has seen), so history, "continue
from" and the queue never mix up two engines' jobs.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections import deque
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from engine.api import EngineLike, Event, Finished, GenerationRequest, ResumeFrom, Step

FRAME_SECONDS = 1.0 / 60.0
RETIRE_TIMEOUT = 30.0  # seconds a replaced engine gets to stop its worker


class EngineChanged(ValueError):
    """A request that needs the engine the window used before (continuing its run)."""


def _is_step(event: Event) -> bool:
    match event:
        case Step():
            return True
        case _:
            return False


class EngineBridge(QObject):
    """Submits requests to an engine and re-emits its events as GUI-thread signals."""

    # Every engine event, in order; of a job's Steps only the newest, at most once a frame.
    eventArrived = Signal(object)
    engineAttached = Signal(str)  # device description

    _wake = Signal()  # emitted on the worker thread, delivered on the GUI thread

    def __init__(self, engine: EngineLike | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._engine: EngineLike | None = None
        self._listener: Callable[[Event], None] | None = None
        self._offset = 0  # window job id = engine job id + offset
        self._issued = 0  # the highest window job id so far
        self._retiring: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._wake_posted = False
        self._last_step_delivery = 0.0
        self.previews_delivered = 0
        self.previews_dropped = 0
        # Seconds the GUI thread spent delivering each batch (all connected slots included).
        self.delivery_seconds: deque[float] = deque(maxlen=100_000)
        self._frame_timer = QTimer(self)
        self._frame_timer.setSingleShot(True)
        self._frame_timer.timeout.connect(self._deliver)
        self._wake.connect(self._on_wake, Qt.ConnectionType.QueuedConnection)
        if engine is not None:
            self.attach(engine)

    # ------------------------------------------------------------------ engine side

    @property
    def engine(self) -> EngineLike | None:
        return self._engine

    @property
    def ready(self) -> bool:
        return self._engine is not None

    def attach(self, engine: EngineLike) -> None:
        if self._engine is not None:
            raise RuntimeError("an engine is already attached")
        self._connect(engine)

    def replace(self, engine: EngineLike) -> None:
        """Use `engine` from now on, without waiting for the old one: it stops on a helper
        thread, and its queued and running jobs end (Cancelled) through this bridge."""
        old, old_listener = self._engine, self._listener
        self._connect(engine)
        if old is None:
            return
        retire = threading.Thread(
            target=_retire, args=(old, old_listener), name="engine-retire", daemon=True
        )
        self._retiring = [t for t in self._retiring if t.is_alive()] + [retire]
        retire.start()

    def _connect(self, engine: EngineLike) -> None:
        self._offset = self._issued
        listener = functools.partial(self._listen, self._offset)
        self._engine, self._listener = engine, listener
        engine.add_listener(listener)
        self.engineAttached.emit(engine.device_description)

    def submit(self, request: GenerationRequest) -> int:
        """Queue on the current engine; EngineChanged for a continue of a run that an
        engine used before made (its steps stay there)."""
        if self._engine is None:
            raise RuntimeError("the engine is still starting")
        resume = request.resume
        if resume is not None:
            if resume.job_id <= self._offset:
                raise EngineChanged(
                    f"Job #{resume.job_id} ran on the engine used before the switch, which "
                    "keeps its steps; run it again from the start here."
                )
            request = request.with_changes(
                resume=ResumeFrom(resume.job_id - self._offset, resume.step)
            )
        job_id = self._engine.submit(request) + self._offset
        self._issued = max(self._issued, job_id)
        return job_id

    def cancel(self, job_id: int) -> bool:
        if self._engine is None or job_id <= self._offset:
            return False  # a replaced engine's jobs are being cancelled already
        return self._engine.cancel(job_id - self._offset)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the engine (joins its worker within `timeout`), then deliver what it sent
        before it stopped: a job that finished just before closing still gets saved."""
        self._frame_timer.stop()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown(timeout)
        for retire in self._retiring:
            retire.join(timeout)
        self._retiring.clear()
        self._deliver()

    def _listen(self, offset: int, event: Event) -> None:
        """Called on the worker thread: must be quick and must not touch Qt widgets."""
        if offset:
            event = _shifted(event, offset)
        with self._lock:
            match event:
                case Step(job_id=job_id):
                    self._drop_pending_step(job_id)
            self._pending.append(event)
            if self._wake_posted:
                return
            self._wake_posted = True
        self._wake.emit()

    def _drop_pending_step(self, job_id: int) -> None:
        """An undelivered older Step of this job is stale now (call with the lock held)."""
        for i, old in enumerate(self._pending):
            match old:
                case Step(job_id=old_job) if old_job == job_id:
                    del self._pending[i]
                    self.previews_dropped += 1
                    return

    # ------------------------------------------------------------------ GUI side

    def _on_wake(self) -> None:
        if self._frame_timer.isActive():
            return
        wait = self._last_step_delivery + FRAME_SECONDS - time.perf_counter()
        if wait > 0 and self._has_pending_step():
            self._frame_timer.start(max(1, int(wait * 1000)))
        else:
            self._deliver()

    def _has_pending_step(self) -> bool:
        with self._lock:
            return any(_is_step(e) for e in self._pending)

    def flush(self) -> None:
        """Deliver everything pending now (used at the end of tests and benchmarks)."""
        self._frame_timer.stop()
        self._deliver()

    def _deliver(self) -> None:
        began = time.perf_counter()
        self._deliver_pending()
        self.delivery_seconds.append(time.perf_counter() - began)

    def _deliver_pending(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
            self._wake_posted = False
        for event in events:
            match event:
                case Step():
                    self._last_step_delivery = time.perf_counter()
                    self.previews_delivered += 1
            self.eventArrived.emit(event)


def _shifted(event: Event, offset: int) -> Event:
    """The event with its job ids in the window's numbering (a result's request names
    the job it continued by id too)."""
    match event:
        case Finished(request=GenerationRequest(resume=ResumeFrom() as resume)):
            moved = ResumeFrom(resume.job_id + offset, resume.step)
            event = dataclasses.replace(event, request=event.request.with_changes(resume=moved))
    return dataclasses.replace(event, job_id=event.job_id + offset)


def _retire(engine: EngineLike, listener: Callable[[Event], None] | None) -> None:
    """Stop a replaced engine (on a helper thread), then stop listening to it."""
    engine.shutdown(RETIRE_TIMEOUT)
    remove = getattr(engine, "remove_listener", None)
    if remove is not None and listener is not None:
        remove(listener)
