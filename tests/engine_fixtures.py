"""Fixture pairs for a test folder with tiny models of its own (module-scoped, so tests that
change weights do not touch the session's) and an engine over them, shut down after
each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from engine_helpers import TinyModels

from engine.worker import Engine


def own_models_and_engine(models_name: str, engine_name: str) -> tuple[Any, Any]:
    """Two fixtures named models_name and engine_name: assign both in a conftest."""

    @pytest.fixture(scope="module", name=models_name)
    def models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
        return TinyModels(tmp_path_factory.mktemp(models_name.replace("_", "-")))

    @pytest.fixture(name=engine_name)
    def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
        eng = Engine(request.getfixturevalue(models_name))
        yield eng
        eng.shutdown(10)

    return models, engine
