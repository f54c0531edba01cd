"""Stable Diffusion XL: a 4-channel UNet with two CLIP text encoders, 1024 px."""

from __future__ import annotations

from engine.api import GuidanceKind, Mode, ModelFamily, SchedulerName
from engine.families.profile import Factors, FamilyProfile, Variant
from engine.families.sd1 import SD_SAMPLERS

_PIPELINES = {
    Mode.TXT2IMG: "StableDiffusionXLPipeline",
    Mode.IMG2IMG: "StableDiffusionXLImg2ImgPipeline",
    Mode.INPAINT: "StableDiffusionXLInpaintPipeline",
}
# ComfyUI's published SDXL factors.
SDXL_FACTORS: Factors = (
    [
        [0.3651, 0.4232, 0.4341],
        [-0.2533, -0.0042, 0.1068],
        [0.1076, 0.1111, -0.0362],
        [-0.3165, -0.2492, -0.2188],
    ],
    [0.1084, -0.0175, -0.0011],
)

PROFILE = FamilyProfile(
    family=ModelFamily.SDXL,
    label="Stable Diffusion XL",
    pipelines=_PIPELINES,
    variants=(
        Variant(
            name="",
            label="Stable Diffusion XL",
            guidance=GuidanceKind.CFG,
            steps=25,
            width=1024,
            height=1024,
            guidance_scale=6.0,
            scheduler=SchedulerName.DPMPP_2M,
        ),
    ),
    samplers=SD_SAMPLERS,
    latent_channels=4,
    latent_rgb=SDXL_FACTORS,
    # Any pipeline class with "XL" in its name, as SDXL folders have always been told.
    pipeline_names=frozenset(_PIPELINES.values()),
    tiny_vae_folder="taesdxl",
    claims=None,
)
