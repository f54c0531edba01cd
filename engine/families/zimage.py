"""Z-Image: a 6B single-stream DiT (S3-DiT) over the FLUX.1 VAE's 16-channel latents,
flow matching, with a Qwen3 text encoder.

Variants: Turbo (distilled to 8 steps; it runs without guidance) and the base model
(true CFG with a negative prompt). model_index.json does not tell them apart (same
pipeline, same transformer config), so the name decides: a folder or hub id without
"turbo" in it but with "base" runs as the base model; everything else as Turbo, the one
most people have. Latents are 16 x h x w, not packed, so previews use FLUX.1's factors
and FLUX.1's tiny autoencoder (taef1) where present.
"""

from __future__ import annotations

from engine.api import GuidanceKind, Mode, ModelFamily, SchedulerName
from engine.families.flux1 import FLUX1_FACTORS, FLUX_SAMPLERS
from engine.families.profile import FamilyProfile, FolderFacts, Variant

_PIPELINES = {
    Mode.TXT2IMG: "ZImagePipeline",
    Mode.IMG2IMG: "ZImageImg2ImgPipeline",
    Mode.INPAINT: "ZImageInpaintPipeline",
}


def _variant(facts: FolderFacts) -> str:
    name = facts.name.lower()
    return "base" if "base" in name and "turbo" not in name else "turbo"


PROFILE = FamilyProfile(
    family=ModelFamily.ZIMAGE,
    label="Z-Image",
    pipelines=_PIPELINES,
    variants=(
        Variant(
            name="turbo",
            label="Z-Image Turbo",
            guidance=GuidanceKind.NONE,
            steps=8,
            width=1024,
            height=1024,
            guidance_scale=0.0,
            scheduler=SchedulerName.EULER,
        ),
        Variant(
            name="base",
            label="Z-Image",
            guidance=GuidanceKind.CFG,
            steps=30,
            width=1024,
            height=1024,
            guidance_scale=4.0,
            scheduler=SchedulerName.EULER,
        ),
    ),
    # The pipelines hand the scheduler its sigmas, as FLUX.1's do.
    samplers=FLUX_SAMPLERS,
    latent_channels=16,
    latent_rgb=FLUX1_FACTORS,  # the same VAE as FLUX.1
    pipeline_names=frozenset(_PIPELINES.values()),
    denoiser_names=frozenset({"ZImageTransformer2DModel"}),
    components=("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    flow=True,
    size_multiple=16,
    tiny_vae_folder="taef1",
    variant_of=_variant,
)
