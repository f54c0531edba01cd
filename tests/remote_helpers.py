"""Helpers for the remote tests: the test token and the tiny models' catalogue."""

from __future__ import annotations

from engine_helpers import TINY, TINY_INPAINT

from server.catalog import ModelCatalog

TOKEN = "test-token-that-is-long-enough"


def tiny_catalog() -> ModelCatalog:
    return ModelCatalog(include_starter=False, fixed={TINY: TINY, TINY_INPAINT: TINY_INPAINT})


def tiny_engine() -> object:
    """An engine on tiny models, built inside a Ray Serve replica's own process."""
    import tempfile
    from pathlib import Path

    from engine_helpers import TinyModels

    from engine.worker import Engine

    return Engine(TinyModels(Path(tempfile.mkdtemp(prefix="tiny-replica-"))))
