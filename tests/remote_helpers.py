"""Helpers for the remote tests: the test token and the tiny models' catalogue."""

from __future__ import annotations

from engine_helpers import TINY, TINY_INPAINT

from server.catalog import ModelCatalog

TOKEN = "test-token-that-is-long-enough"


def tiny_catalog() -> ModelCatalog:
    return ModelCatalog(include_starter=False, fixed={TINY: TINY, TINY_INPAINT: TINY_INPAINT})


def tiny_engine() -> object:
    """An engine on tiny models, built inside a Ray Serve replica's own process. A model
    folder named like a tiny model (as diffusiondesk-server's catalogue resolves "tiny"
    to a path) serves that tiny model."""
    import tempfile
    from pathlib import Path

    from engine_helpers import TinyModels

    from engine.worker import Engine

    class TinyByName(TinyModels):
        def get(self, source, progress, should_cancel):  # type: ignore[no-untyped-def]
            name = Path(source).name
            return super().get(
                name if name in (TINY, TINY_INPAINT) else source, progress, should_cancel
            )

    return Engine(TinyByName(Path(tempfile.mkdtemp(prefix="tiny-replica-"))))
