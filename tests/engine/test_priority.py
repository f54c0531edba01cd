"""The engine can run below the window's priority, and still does its work."""

from __future__ import annotations

import os
import sys

import pytest
from engine_helpers import WAIT, request

from engine.api import Finished
from engine.worker import Engine


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_worker_thread_runs_at_lower_priority(tiny_models):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    engine = Engine(tiny_models, niceness=3)
    try:
        assert isinstance(engine.wait(engine.submit(request(steps=2)), WAIT), Finished)
        worker = engine._thread.native_id
        assert os.getpriority(os.PRIO_PROCESS, worker) == min(19, base + 3)
        # Only the worker: the caller's own thread keeps its priority.
        assert os.getpriority(os.PRIO_PROCESS, 0) == base
    finally:
        engine.shutdown(10)


def test_default_engine_keeps_the_priority(tiny_models):
    engine = Engine(tiny_models)
    try:
        assert isinstance(engine.wait(engine.submit(request(steps=1)), WAIT), Finished)
        if sys.platform.startswith("linux"):
            worker = engine._thread.native_id
            assert os.getpriority(os.PRIO_PROCESS, worker) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        engine.shutdown(10)
