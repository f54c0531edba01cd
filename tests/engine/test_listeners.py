"""The listeners' fan-out shared by the local and the remote engine."""

from __future__ import annotations

import logging

import pytest

from engine.listeners import Listeners


def test_a_failing_listener_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[tuple[bool, str]] = []

    def broken(connected: bool, message: str) -> None:
        raise RuntimeError("listener bug")

    listeners: Listeners[[bool, str]] = Listeners("a status listener")
    listeners.add(broken)
    listeners.add(lambda connected, message: heard.append((connected, message)))
    with caplog.at_level(logging.ERROR):
        listeners.emit(True, "connected")
    assert heard == [(True, "connected")]
    assert "a status listener failed" in caplog.text


def test_a_listener_may_remove_itself_while_being_called() -> None:
    calls: list[int] = []
    listeners: Listeners[[int]] = Listeners()

    def once(value: int) -> None:
        calls.append(value)
        listeners.remove(once)

    listeners.add(once)
    listeners.emit(1)
    listeners.emit(2)
    listeners.remove(once)  # removing one that is gone does nothing
    assert calls == [1]
