"""Stable Diffusion 1.x: a 4-channel UNet with CLIP ViT-L, 512 px, true CFG."""

from __future__ import annotations

from engine.api import GuidanceKind, Mode, ModelFamily, SchedulerName
from engine.families.profile import Factors, FamilyProfile, FolderFacts, Variant
from engine.schedulers import SCHEDULERS

SD_PIPELINES = {
    Mode.TXT2IMG: "StableDiffusionPipeline",
    Mode.IMG2IMG: "StableDiffusionImg2ImgPipeline",
    Mode.INPAINT: "StableDiffusionInpaintPipeline",
}
# Every non-flow sampler fits the SD families.
SD_SAMPLERS = tuple(SCHEDULERS)
# The SD VAE's (scaled) latents to RGB in [-1, 1], ComfyUI's published SD 1.5 factors;
# SD 1.x and 2.x share the VAE.
SD_FACTORS: Factors = (
    [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ],
    [0.0, 0.0, 0.0],
)


def text_width(facts: FolderFacts) -> int:
    """Hidden width of the folder's text encoder: 768 for SD 1.x, 1024 for SD 2.x."""
    return int(facts.config("text_encoder").get("hidden_size", 0) or 0)


PROFILE = FamilyProfile(
    family=ModelFamily.SD1,
    label="Stable Diffusion 1.x",
    pipelines=SD_PIPELINES,
    variants=(
        Variant(
            name="",
            label="Stable Diffusion 1.x",
            guidance=GuidanceKind.CFG,
            steps=25,
            width=512,
            height=512,
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
    claims=lambda facts: text_width(facts) != 1024,
)
