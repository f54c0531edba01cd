"""The bridge's thread crossing and preview dropping; the view-model's change signals."""

from __future__ import annotations

import threading

import numpy as np
from PySide6.QtCore import QThread

from engine.api import Event, Finished, GenerationRequest, Queued, Started, Step
from guiapp.bridge import EngineBridge
from guiapp.state import ViewModel


class ListenerOnly:
    """Just enough engine for the bridge: a listener to call from any thread."""

    device_description = "test"

    def __init__(self) -> None:
        self.listeners = []

    def add_listener(self, listener) -> None:
        self.listeners.append(listener)

    def emit(self, event) -> None:
        for listener in self.listeners:
            listener(event)

    def shutdown(self, timeout: float = 5.0) -> None:
        pass


def _step(job: int, step: int, total: int = 50) -> Step:
    frame = np.full((4, 4, 3), step, np.uint8)
    return Step(job, step, total, 0.1 * step, frame, frame)


def test_events_from_a_worker_thread_arrive_on_the_gui_thread(qtbot) -> None:
    engine = ListenerOnly()
    bridge = EngineBridge(engine)
    seen: list[tuple[str, bool]] = []
    gui_thread = QThread.currentThread()
    on_gui_thread = lambda: QThread.currentThread() is gui_thread  # noqa: E731
    bridge.eventArrived.connect(lambda e: seen.append((e.kind, on_gui_thread())))
    request = GenerationRequest(prompt="x")

    def work() -> None:
        engine.emit(Queued(1, 0))
        engine.emit(Started(1, 3, "starter", "cpu", (1,)))

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: len(seen) == 2)
    assert seen == [("queued", True), ("started", True)]
    assert request.prompt == "x"
    bridge.shutdown()


def test_stale_previews_are_dropped_and_the_newest_is_delivered(qtbot) -> None:
    engine = ListenerOnly()
    bridge = EngineBridge(engine)
    steps: list[int] = []
    order: list[str] = []

    def record(event: Event) -> None:
        match event:
            case Step(step=step):
                steps.append(step)
                order.append("step")
            case Finished():
                order.append("finished")

    bridge.eventArrived.connect(record)

    def work() -> None:
        for i in range(1, 51):
            engine.emit(_step(7, i))
        engine.emit(Finished(7, (), (), GenerationRequest(prompt="x"), {}))

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: "finished" in order)
    assert steps[-1] == 50, "the newest preview always reaches the screen"
    assert len(steps) < 50, "previews overtaken by newer ones are dropped, not queued"
    assert steps == sorted(steps)
    assert order[-1] == "finished"
    assert bridge.previews_delivered + bridge.previews_dropped == 50
    bridge.shutdown()


def test_view_model_emits_only_on_change(qtbot) -> None:
    model = ViewModel({"steps": 20})
    changes: list[int] = []
    model.stepsChanged.connect(changes.append)
    model.steps = 20
    model.steps = 30
    model.steps = 30
    assert changes == [30]
    model.random_seed = False
    model.seed = 42
    request = model.build_request()
    assert (request.steps, request.seed) == (30, 42)
    model.random_seed = True
    assert model.build_request().seed is None


def test_seeds_beyond_32_bits_survive_the_form(qtbot) -> None:
    from guiapp.widgets.parameter_panel import ParameterPanel

    model = ViewModel()
    panel = ParameterPanel(model)
    qtbot.addWidget(panel)
    model.seed = 2**40 + 3
    assert model.seed == 2**40 + 3
    assert int(panel.seed_spin.value()) == 2**40 + 3
    panel.seed_spin.setValue(2**45 + 1)
    assert model.seed == 2**45 + 1
