"""Every flow-matching family's tiny model as the engine's LoadedModel, for the canvas tests
(forward process, outpainting, hires fix, upscaling): SD 3, FLUX.1 dev / schnell / Fill
from tests/tiny_flow_models.py and the families of tests/tiny_new_families.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from tempfile import mkdtemp

import torch
from engine_helpers import TinyModels, request
from new_family_helpers import TINY_FAMILIES, TinyFamily, loaded
from tiny_flow_models import tiny_flux_pipeline, tiny_sd3_pipeline

from engine import families
from engine.api import GenerationRequest, GuidanceKind, Mode, ModelFamily
from engine.models import LoadedModel
from engine.worker import Engine


@dataclass(frozen=True)
class FlowModel:
    name: str
    family: ModelFamily
    variant: str

    @property
    def source(self) -> str:
        return f"tiny-flow-{self.name}"

    @property
    def profile(self) -> families.FamilyProfile:
        return families.profile(self.family)

    @property
    def modes(self) -> tuple[Mode, ...]:
        return self.profile.modes(self.variant)

    def __str__(self) -> str:
        return self.name


FLOW_MODELS = (
    FlowModel("sd3", ModelFamily.SD3, ""),
    FlowModel("flux-dev", ModelFamily.FLUX1, "dev"),
    FlowModel("flux-schnell", ModelFamily.FLUX1, "schnell"),
    FlowModel("flux-fill", ModelFamily.FLUX1, "fill"),
    *(FlowModel(f.name, f.family, f.variant) for f in TINY_FAMILIES),
)


@cache
def flow_model(model: FlowModel) -> LoadedModel:
    """The tiny model as ModelManager would hand it over."""
    for family in TINY_FAMILIES:
        if family.name == model.name:
            return loaded(TinyFamily(family.name, family.family, family.variant))
    tmp = Path(mkdtemp(prefix="flow-canvas-"))
    if model.family is ModelFamily.SD3:
        pipe = tiny_sd3_pipeline(tmp)
    else:
        pipe = tiny_flux_pipeline(tmp, variant=model.variant)
    return LoadedModel(
        source=model.source,
        family=model.family,
        pipe=pipe,
        latent_rgb=None,
        tiny_vae=None,
        is_inpaint_unet=model.modes == (Mode.INPAINT,),
        device=torch.device("cpu"),
        dtype=torch.float32,
        variant=model.variant,
    )


def serve_flow(models: TinyModels) -> None:
    """Let the engine's stand-in model manager serve every tiny flow model by its source."""
    for model in FLOW_MODELS:
        models.variants[model.source] = flow_model(model)


def flow_request(model: FlowModel, **changes: object) -> GenerationRequest:
    """A small request with the variant's own sampler and guidance."""
    defaults = model.profile.variant(model.variant)
    base = request(
        model=model.source,
        width=64,
        height=64,
        steps=defaults.steps if defaults.steps <= 4 else 3,
        scheduler=defaults.scheduler.value,
        guidance_scale=defaults.guidance_scale,
        negative_prompt="blurry" if defaults.guidance is GuidanceKind.CFG else "",
    )
    return base.with_changes(**changes)


def module_engine(tiny_models: TinyModels) -> Iterator[Engine]:
    """One engine for a test module's many small jobs (its `engine` fixture yields from
    this): an engine started and stopped per test is slow on a loaded machine."""
    serve_flow(tiny_models)
    eng = Engine(tiny_models)
    yield eng
    eng.shutdown(60)
    assert not eng._thread.is_alive()
