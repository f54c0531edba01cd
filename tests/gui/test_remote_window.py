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


def test_switching_to_a_server_shows_a_refused_token_inline_then_connects_and_reconnects(
    qtbot, make_window, fake_engine, served_engine
):
    from remote_helpers import TOKEN

    from engine.remote import RemoteEngine
    from guiapp.engine_location import EngineLocation
    from server.app import ServerConfig, create_app
    from server.hub import JobHub
    from server.running import BackgroundServer
    from server.security import TokenCheck

    def serve(port: int = 0) -> BackgroundServer:
        hub = JobHub(served_engine, tiny_catalog(), where="box")  # type: ignore[arg-type]
        config = ServerConfig(token=TokenCheck.for_token(TOKEN))
        return BackgroundServer(create_app(hub, config), port=port).start()

    window = make_window(fake_engine)
    server = serve()
    try:
        window.use_engine_location(EngineLocation(server.url, "wrong-token"))
        qtbot.waitUntil(
            lambda: "refused the access token" in window.error_area.message(), timeout=60_000
        )
        assert window.bridge.engine is not fake_engine  # switched; it keeps trying
        window.use_engine_location(EngineLocation(server.url, TOKEN))
        qtbot.waitUntil(
            lambda: window.device_label.text() == "cpu (float32) on box", timeout=60_000
        )
        assert window.error_area.message() == ""
        assert isinstance(window.bridge.engine, RemoteEngine)
        port = server.port
        server.stop()
        qtbot.waitUntil(lambda: window.device_label.text() == "not connected", timeout=60_000)
        assert "Lost the connection" in window.error_area.message() or (
            "Cannot reach" in window.error_area.message()
        )
        server = serve(port)  # the same address comes back: the window reconnects by itself
        qtbot.waitUntil(lambda: window.error_area.message() == "", timeout=60_000)
        window.form.model, window.form.steps = "tiny", 2
        window.form.width = window.form.height = 32
        assert window.workspace.generate() is not None
        qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=120_000)
    finally:
        window.close()
        server.stop()


def test_the_window_command_takes_a_server_and_token_for_this_run_only(settings):
    from guiapp.app import initial_location, parse_args
    from guiapp.engine_location import EngineLocation

    args = parse_args(["--engine", "http://gpu-box:7860", "--token", "abc"])
    assert initial_location(args, settings, smoke=False) == EngineLocation(
        "http://gpu-box:7860", "abc"
    )
    assert settings.engine_location() == EngineLocation()
    settings.set_engine_location(EngineLocation("http://saved:7860"))
    assert initial_location(parse_args([]), settings, smoke=False).server == "http://saved:7860"
    assert initial_location(parse_args([]), settings, smoke=True).local
    with pytest.raises(SystemExit):
        parse_args(["--engine", "ftp://x"])
