"""Stable Diffusion 2.x: the SD 1.x layout with OpenCLIP ViT-H (1024 wide), 768 px."""

from __future__ import annotations

from engine.api import GuidanceKind, ModelFamily, SchedulerName
from engine.families.profile import FamilyProfile, Variant
from engine.families.sd1 import SD_FACTORS, SD_PIPELINES, SD_SAMPLERS, text_width

PROFILE = FamilyProfile(
    family=ModelFamily.SD2,
    label="Stable Diffusion 2.x",
    pipelines=SD_PIPELINES,
    variants=(
        Variant(
            name="",
            label="Stable Diffusion 2.x",
            guidance=GuidanceKind.CFG,
            steps=25,
            width=768,
            height=768,
            guidance_scale=7.0,
            scheduler=SchedulerName.DPMPP_2M,
        ),
    ),
    samplers=SD_SAMPLERS,
    latent_channels=4,
    latent_rgb=SD_FACTORS,
    pipeline_names=frozenset(SD_PIPELINES.values()),
    denoiser_names=frozenset({"UNet2DConditionModel"}),
    tiny_vae_folder="taesd",
    claims=lambda facts: text_width(facts) == 1024,
)
