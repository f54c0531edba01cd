"""The window driving an engine on a diffusiondesk-server (127.0.0.1, tiny models)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_helpers import TinyModels
from PIL import Image
from PySide6.QtCore import Qt
from remote_helpers import tiny_catalog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Built before the leak check starts: building the model starts tqdm's monitor."""
    from engine_helpers import WAIT, request

    from engine.worker import Engine

    engine = Engine(TinyModels(tmp_path_factory.mktemp("tiny")))
    engine.generate(request(steps=1), WAIT)
    yield engine
    engine.shutdown(10)


@pytest.fixture
def server_url(served_engine) -> Iterator[str]:
    from server.app import create_app
    from server.hub import JobHub
    from server.running import BackgroundServer

    hub = JobHub(served_engine, tiny_catalog(), where="box")  # type: ignore[arg-type]
    with BackgroundServer(create_app(hub)) as server:
        yield server.url


def test_the_window_generates_scrubs_and_shows_where_the_job_ran(qtbot, make_window, server_url):
    from engine.remote import RemoteEngine

    window = make_window(RemoteEngine(server_url))
    window.form.model = "tiny"
    window.form.width = window.form.height = 32
    window.form.steps = 3
    window.form.random_seed = False
    window.form.seed = 1
    qtbot.keyClicks(window.prompt_panel.prompt_edit, "a red circle")
    qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=120_000)
    assert window.error_area.message() == ""
    assert window.canvas.previews_shown >= 1
    assert window.scrubber.slider.maximum() == 3
    entry = window.workspace.history.entries()[0]
    with Image.open(entry.path) as image:
        assert image.size == (32, 32) and "parameters" in image.info
    assert window.bridge.engine.device_description == "cpu (float32) on box"
