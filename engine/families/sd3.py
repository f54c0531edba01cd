"""Stable Diffusion 3 and 3.5: an MMDiT over 16-channel latents, flow matching, true CFG
with a negative prompt, three text encoders (CLIP-L, CLIP-G, T5-XXL).

Variants, told from the transformer's config: 3.5 medium (MMDiT-X: dual-attention
layers), 3.5 large (38 layers with QK norm; "turbo" in the name: the 4-step distilled
Large Turbo, unguided) and SD 3 medium.
"""

from __future__ import annotations

from engine.api import GuidanceKind, Mode, ModelFamily, SchedulerName
from engine.families.profile import Factors, FamilyProfile, FolderFacts, Variant

_PIPELINES = {
    Mode.TXT2IMG: "StableDiffusion3Pipeline",
    Mode.IMG2IMG: "StableDiffusion3Img2ImgPipeline",
    Mode.INPAINT: "StableDiffusion3InpaintPipeline",
}
# ComfyUI's published SD3 factors (scaled and shifted latents to RGB in [-1, 1]);
# tools/fit_latent_rgb.py fits them again on a VAE.
SD3_FACTORS: Factors = (
    [
        [-0.0922, -0.0175, 0.0749],
        [0.0311, 0.0633, 0.0954],
        [0.1994, 0.0927, 0.0458],
        [0.0856, 0.0339, 0.0902],
        [0.0587, 0.0272, -0.0496],
        [-0.0006, 0.1104, 0.0309],
        [0.0978, 0.0306, 0.0427],
        [-0.0042, 0.1038, 0.1358],
        [-0.0194, 0.0020, 0.0669],
        [-0.0488, 0.0130, -0.0268],
        [0.0922, 0.0988, 0.0951],
        [-0.0278, 0.0524, -0.0542],
        [0.0332, 0.0456, 0.0895],
        [-0.0069, -0.0030, -0.0810],
        [-0.0596, -0.0465, -0.0293],
        [-0.1448, -0.1463, -0.1189],
    ],
    [0.2394, 0.2135, 0.1925],
)
FLOW_SAMPLERS = (
    SchedulerName.EULER,
    SchedulerName.EULER_A,
    SchedulerName.DPMPP_2M,
    SchedulerName.UNIPC,
)


def _variant(facts: FolderFacts) -> str:
    config = facts.config("transformer")
    if config.get("dual_attention_layers"):
        return "3.5-medium"
    if config.get("qk_norm") and int(config.get("num_layers", 0) or 0) >= 38:
        return "3.5-large-turbo" if "turbo" in facts.name.lower() else "3.5-large"
    return ""


def _cfg(name: str, label: str, steps: int, scale: float) -> Variant:
    return Variant(
        name=name,
        label=label,
        guidance=GuidanceKind.CFG,
        steps=steps,
        width=1024,
        height=1024,
        guidance_scale=scale,
        scheduler=SchedulerName.EULER,
    )


PROFILE = FamilyProfile(
    family=ModelFamily.SD3,
    label="Stable Diffusion 3",
    pipelines=_PIPELINES,
    variants=(
        _cfg("", "Stable Diffusion 3 Medium", 28, 7.0),
        _cfg("3.5-medium", "Stable Diffusion 3.5 Medium", 40, 4.5),
        _cfg("3.5-large", "Stable Diffusion 3.5 Large", 28, 3.5),
        Variant(
            name="3.5-large-turbo",
            label="Stable Diffusion 3.5 Large Turbo",
            guidance=GuidanceKind.NONE,
            steps=4,
            width=1024,
            height=1024,
            guidance_scale=0.0,
            scheduler=SchedulerName.EULER,
        ),
    ),
    samplers=FLOW_SAMPLERS,
    latent_channels=16,
    latent_rgb=SD3_FACTORS,
    pipeline_names=frozenset(_PIPELINES.values()),
    denoiser_names=frozenset({"SD3Transformer2DModel"}),
    components=(
        "transformer",
        "vae",
        "text_encoder",
        "text_encoder_2",
        "tokenizer",
        "tokenizer_2",
        "scheduler",
    ),
    cfg_cutoff_modes=(Mode.TXT2IMG,),
    flow=True,
    size_multiple=16,
    tiny_vae_folder="taesd3",
    variant_of=_variant,
)
