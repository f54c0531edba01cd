"""`diffusiondesk --smoke-test`: one picture through the real window, a JSON report, and
exit code 0 only when the window showed, the engine started and the picture was saved."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from gui.fake_engine import FakeEngine

from engine.api import ErrorKind
from guiapp.app import EngineStarter, attach_when_ready
from guiapp.bridge import EngineBridge
from guiapp.smoke_test import SmokeTest
from guiapp.window import MainWindow


def _run_smoke_test(qtbot, factory: Callable[[], FakeEngine]) -> tuple[int, SmokeTest]:
    smoke = SmokeTest(time.perf_counter(), timeout_s=60)
    window = MainWindow(EngineBridge(), smoke.settings)
    qtbot.addWidget(window)
    starter = EngineStarter(factory)
    attach_when_ready(window, starter)
    smoke.watch(window, starter)
    window.show()
    starter.start()
    qtbot.waitUntil(lambda: window.closed, timeout=30_000)
    starter.join(5)
    if starter.engine is not None:
        starter.engine.shutdown(5)
    return smoke.report(0), smoke


def _report(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_smoke_test_makes_a_picture_through_the_window_and_exits_zero(
    qtbot,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, smoke = _run_smoke_test(qtbot, FakeEngine)
    report = _report(capsys)

    assert code == 0
    assert report["smoke_test"] == "passed" and report["device"] == "fake (float32)"
    assert len(report["saved"]) == 1 and report["saved"][0].endswith(".png")
    assert 0 <= report["window_shown_s"] <= report["engine_ready_s"] <= report["picture_done_s"]
    assert not smoke.scratch.exists()  # throw-away settings and pictures are removed


def test_the_smoke_test_fails_with_the_reason_when_the_engine_cannot_start(
    qtbot,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken() -> FakeEngine:
        raise RuntimeError("no torch here")

    code, _ = _run_smoke_test(qtbot, broken)
    report = _report(capsys)
    assert code == 1
    assert report["smoke_test"] == "failed" and "no torch here" in report["reason"]


def test_the_smoke_test_fails_when_the_picture_fails(
    qtbot,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def failing() -> FakeEngine:
        engine = FakeEngine()
        engine.fail_next = (ErrorKind.MODEL, "The bundled starter model is missing")
        return engine

    code, _ = _run_smoke_test(qtbot, failing)
    report = _report(capsys)
    assert code == 1 and "starter model is missing" in report["reason"]
    assert report["saved"] == []
