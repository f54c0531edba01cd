"""Helpers for the engine tests of the flow-matching families (SD 3 and FLUX.1 as
tests/tiny_flow_models.py builds them; Z-Image, Qwen-Image, SANA / SANA-Sprint and FLUX.2
klein as tests/tiny_new_families.py does): the tiny models as the engine's LoadedModel,
requests with each variant's defaults, and the plain diffusers call an engine run must
equal."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import diffusers
import torch
from engine_helpers import TinyModels, request
from PIL import Image
from tiny_flow_models import tiny_flux_pipeline, tiny_sd3_pipeline
from tiny_new_families import tiny_family_pipeline

from engine import compositing, families
from engine.api import GenerationRequest, GuidanceKind, Mode, ModelFamily
from engine.latent_fit import fit_latent_rgb
from engine.models import LoadedModel


@dataclass(frozen=True)
class TinyFamily:
    """A family variant's tiny model, and the source name the engine's stand-in model
    manager serves it by (prefix + name)."""

    name: str  # as tests/tiny_new_families.py names it ("sd3", "flux-<variant>" else)
    family: ModelFamily
    variant: str
    prefix: str = "tiny-"

    @property
    def source(self) -> str:
        return f"{self.prefix}{self.name}"

    @property
    def profile(self) -> families.FamilyProfile:
        return families.profile(self.family)

    @property
    def modes(self) -> tuple[Mode, ...]:
        return self.profile.modes(self.variant)

    def __str__(self) -> str:
        return self.name


TINY_FAMILIES = (
    TinyFamily("zimage", ModelFamily.ZIMAGE, "turbo"),
    TinyFamily("qwen-image", ModelFamily.QWEN_IMAGE, ""),
    TinyFamily("sana", ModelFamily.SANA, ""),
    TinyFamily("sana-sprint", ModelFamily.SANA, "sprint"),
    TinyFamily("flux2-klein", ModelFamily.FLUX2, "distilled"),
    TinyFamily("flux2-klein-base", ModelFamily.FLUX2, "base"),
)
# Every (family, mode) diffusers has a pipeline for.
FAMILY_MODES = [(f, m) for f in TINY_FAMILIES for m in f.modes]


def loaded(family: TinyFamily) -> LoadedModel:
    """The tiny model as ModelManager would hand it over (factors fitted where the family
    has none published, as the loader does); one per model, whatever name serves it."""
    return _loaded(family.name, family.family, family.variant)


@cache
def _loaded(name: str, family_name: ModelFamily, variant: str) -> LoadedModel:
    family = TinyFamily(name, family_name, variant)
    if family.family is ModelFamily.SD3:
        pipe: Any = tiny_sd3_pipeline(Path(mkdtemp(prefix="tiny-sd3-")))
    elif family.family is ModelFamily.FLUX1:
        pipe = tiny_flux_pipeline(Path(mkdtemp(prefix="tiny-flux-")), variant=variant)
    else:
        pipe = tiny_family_pipeline(name)
    latent_rgb = None
    if not family.profile.latent_rgb[0]:
        latent_rgb = fit_latent_rgb(pipe.vae, int(pipe.vae_scale_factor))
    return LoadedModel(
        source=family.source,
        family=family.family,
        pipe=pipe,
        latent_rgb=latent_rgb,
        tiny_vae=None,
        is_inpaint_unet=family.modes == (Mode.INPAINT,),  # FLUX.1 Fill
        device=torch.device("cpu"),
        dtype=torch.float32,
        variant=family.variant,
    )


def serve(models: TinyModels, served: Iterable[TinyFamily] = TINY_FAMILIES) -> None:
    """Let the engine's stand-in model manager serve every tiny family by its source."""
    for family in served:
        models.variants[family.source] = loaded(family)


def family_request(family: TinyFamily, **changes: object) -> GenerationRequest:
    """A small request with the variant's own sampler, guidance and (for Sprint) steps."""
    defaults = family.profile.variant(family.variant)
    base = request(
        model=family.source,
        width=64,
        height=64,
        steps=defaults.steps if defaults.steps <= 4 else 3,
        scheduler=defaults.scheduler.value,
        guidance_scale=defaults.guidance_scale,
        negative_prompt="blurry" if defaults.guidance is GuidanceKind.CFG else "",
    )
    return base.with_changes(**changes)


def plain_diffusers(family: TinyFamily, r: GenerationRequest) -> Image.Image:
    """The same picture from diffusers alone: the family's pipeline for the request's mode,
    called as its documentation shows, with the model's own scheduler."""
    pipe = loaded(family).pipe
    mode = r.mode
    cls = getattr(diffusers, family.profile.pipeline_name(mode, family.variant) or "")
    plain = cls.from_pipe(pipe)
    plain.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    guidance = family.profile.variant(family.variant).guidance
    args: dict[str, Any] = {
        "prompt": r.prompt,
        "num_inference_steps": r.steps,
        "generator": [torch.Generator("cpu").manual_seed(r.seed or 0)],
    }
    if mode is Mode.IMG2IMG:
        args.update(image=r.init_image, strength=r.strength)
    args.update(width=r.width, height=r.height)  # img2img too: else they pick their own size
    if mode is Mode.INPAINT:
        # The engine hands the pipeline the mask grown by a latent cell (compositing.py).
        mask = compositing.pipeline_mask(r.mask)
        args.update(image=r.init_image, mask_image=mask, strength=r.strength)
    if family.family is ModelFamily.QWEN_IMAGE:
        args.update(true_cfg_scale=r.guidance_scale, negative_prompt=r.negative_prompt or " ")
    elif family.family is ModelFamily.SANA:
        args.update(use_resolution_binning=False, guidance_scale=r.guidance_scale)
        if guidance is GuidanceKind.CFG:
            args["negative_prompt"] = r.negative_prompt
    elif family.family is ModelFamily.FLUX2 and guidance is GuidanceKind.CFG:
        args["guidance_scale"] = r.guidance_scale
        if r.negative_prompt:
            with torch.inference_mode():
                args["negative_prompt_embeds"], _ = plain.encode_prompt(
                    prompt=r.negative_prompt, device=torch.device("cpu")
                )
    elif family.family is ModelFamily.ZIMAGE:
        if guidance is GuidanceKind.CFG:
            args.update(guidance_scale=r.guidance_scale, negative_prompt=r.negative_prompt)
        else:
            args["guidance_scale"] = 0.0
    with torch.inference_mode():
        return plain(**args).images[0]
