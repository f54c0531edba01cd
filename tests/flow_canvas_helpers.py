"""Every flow-matching family's tiny model for the canvas tests (forward process,
outpainting, hires fix, upscaling): SD 3, FLUX.1 dev / schnell / Fill and the families of
tests/tiny_new_families.py, served under `tiny-flow-` names (tests/new_family_helpers.py
builds them and their requests)."""

from __future__ import annotations

from collections.abc import Iterator

from engine_helpers import TinyModels
from new_family_helpers import TINY_FAMILIES, TinyFamily, family_request, loaded, serve

from engine.api import ModelFamily
from engine.worker import Engine

FlowModel = TinyFamily
flow_model = loaded  # the tiny model as ModelManager would hand it over
flow_request = family_request  # a small request with the variant's own sampler and guidance


def _flow(name: str, family: ModelFamily, variant: str) -> TinyFamily:
    return TinyFamily(name, family, variant, prefix="tiny-flow-")


FLOW_MODELS = (
    _flow("sd3", ModelFamily.SD3, ""),
    _flow("flux-dev", ModelFamily.FLUX1, "dev"),
    _flow("flux-schnell", ModelFamily.FLUX1, "schnell"),
    _flow("flux-fill", ModelFamily.FLUX1, "fill"),
    *(_flow(f.name, f.family, f.variant) for f in TINY_FAMILIES),
)


def serve_flow(models: TinyModels) -> None:
    """Let the engine's stand-in model manager serve every tiny flow model by its source."""
    serve(models, FLOW_MODELS)


def module_engine(tiny_models: TinyModels) -> Iterator[Engine]:
    """One engine for a test module's many small jobs (its `engine` fixture yields from
    this): an engine started and stopped per test is slow on a loaded machine."""
    serve_flow(tiny_models)
    eng = Engine(tiny_models)
    yield eng
    eng.shutdown(60)
    assert not eng._thread.is_alive()
