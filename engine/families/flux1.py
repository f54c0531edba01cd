"""FLUX.1: a 12B rectified-flow transformer over 16-channel latents packed into 2 x 2
tokens, with CLIP-L and T5-XXL.

Variants, told from the transformer's config: dev (guidance distilled into the model;
a negative prompt only with true CFG, the pipelines' true_cfg_scale, off by default as
it doubles the work per step), schnell (4 steps, no guidance: no guidance embedding) and Fill
(inpainting: 384 input channels, the masked picture and the mask beside the latents;
inpaint through FluxFillPipeline, which ignores strength).
"""

from __future__ import annotations

from engine.api import GuidanceKind, Mode, ModelFamily, SchedulerName
from engine.families.profile import Factors, FamilyProfile, FolderFacts, Variant, unpack_2x2

_PIPELINES = {
    Mode.TXT2IMG: "FluxPipeline",
    Mode.IMG2IMG: "FluxImg2ImgPipeline",
    Mode.INPAINT: "FluxInpaintPipeline",
}
# ComfyUI's published FLUX.1 factors (scaled and shifted latents to RGB in [-1, 1]);
# tools/fit_latent_rgb.py fits them again on a VAE.
FLUX1_FACTORS: Factors = (
    [
        [-0.0346, 0.0244, 0.0681],
        [0.0034, 0.0210, 0.0687],
        [0.0275, -0.0668, -0.0433],
        [-0.0174, 0.0160, 0.0617],
        [0.0859, 0.0721, 0.0329],
        [0.0004, 0.0383, 0.0115],
        [0.0405, 0.0861, 0.0915],
        [-0.0236, -0.0185, -0.0259],
        [-0.0245, 0.0250, 0.1180],
        [0.1008, 0.0755, -0.0421],
        [-0.0515, 0.0201, 0.0011],
        [0.0428, -0.0012, -0.0036],
        [0.0817, 0.0765, 0.0749],
        [-0.1264, -0.0522, -0.1103],
        [-0.0280, -0.0881, -0.0499],
        [-0.1262, -0.0982, -0.0778],
    ],
    [-0.0329, -0.0718, -0.0851],
)
# FluxPipeline hands its schedule to the scheduler as sigmas: only the samplers whose
# set_timesteps takes sigmas (DPM++ does not).
FLUX_SAMPLERS = (SchedulerName.EULER, SchedulerName.EULER_A, SchedulerName.UNIPC)
FILL_IN_CHANNELS = 384  # 64 packed latent + 64 packed masked picture + 256 packed mask


def _variant(facts: FolderFacts) -> str:
    config = facts.config("transformer")
    if (
        facts.class_name == "FluxFillPipeline"
        or int(config.get("in_channels", 0) or 0) == FILL_IN_CHANNELS
    ):
        return "fill"
    if config and not config.get("guidance_embeds", True):
        return "schnell"
    return "dev"


PROFILE = FamilyProfile(
    family=ModelFamily.FLUX1,
    label="FLUX.1",
    pipelines=_PIPELINES,
    variants=(
        Variant(
            name="dev",
            label="FLUX.1 dev",
            guidance=GuidanceKind.DISTILLED,
            steps=28,
            width=1024,
            height=1024,
            guidance_scale=3.5,
            scheduler=SchedulerName.EULER,
            true_cfg=True,
        ),
        Variant(
            name="schnell",
            label="FLUX.1 schnell",
            guidance=GuidanceKind.NONE,
            steps=4,
            width=1024,
            height=1024,
            guidance_scale=0.0,
            scheduler=SchedulerName.EULER,
        ),
        Variant(
            name="fill",
            label="FLUX.1 Fill",
            guidance=GuidanceKind.DISTILLED,
            steps=28,
            width=1024,
            height=1024,
            guidance_scale=30.0,
            scheduler=SchedulerName.EULER,
            # Fill only inpaints (it needs a picture and a mask).
            pipelines={
                Mode.TXT2IMG: None,
                Mode.IMG2IMG: None,
                Mode.INPAINT: "FluxFillPipeline",
            },
        ),
    ),
    samplers=FLUX_SAMPLERS,
    latent_channels=16,
    latent_rgb=FLUX1_FACTORS,
    pipeline_names=frozenset({*_PIPELINES.values(), "FluxFillPipeline"}),
    denoiser_names=frozenset({"FluxTransformer2DModel"}),
    components=(
        "transformer",
        "vae",
        "text_encoder",
        "text_encoder_2",
        "tokenizer",
        "tokenizer_2",
        "scheduler",
    ),
    flow=True,
    size_multiple=16,
    unpack=unpack_2x2,
    tiny_vae_folder="taef1",
    variant_of=_variant,
)
