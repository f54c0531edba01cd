"""Helpers for the remote tests: the test token and the tiny models' catalogue."""

from __future__ import annotations

from engine_helpers import TINY, TINY_INPAINT

from server.catalog import ModelCatalog

TOKEN = "test-token-that-is-long-enough"


def tiny_catalog() -> ModelCatalog:
    return ModelCatalog(include_starter=False, fixed={TINY: TINY, TINY_INPAINT: TINY_INPAINT})
