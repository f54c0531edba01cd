"""Qwen-Image: a 20B MMDiT over a video VAE's 16-channel latents (Wan 2.1's VAE, tuned;
the pipeline adds a frame axis and packs 2 x 2 patches into 64-wide tokens as FLUX
does), flow matching, Qwen2.5-VL as the text encoder.

Guidance is true CFG with a negative prompt, which diffusers calls true_cfg_scale (its
guidance_scale is for guidance-distilled checkpoints only); the request's guidance scale
goes there. diffusers runs no CFG at all when the negative prompt is empty, so an empty
one is sent as " ", as the model's own examples do. The edit, layered and ControlNet
pipelines share the transformer but are other models: they are refused, not run as
text to image.
"""

from __future__ import annotations

from typing import Any

from engine.api import GuidanceKind, Mode, ModelFamily, SchedulerName
from engine.families.flux1 import FLUX_SAMPLERS
from engine.families.profile import Factors, FamilyProfile, FolderFacts, Variant, unpack_2x2

_PIPELINES = {
    Mode.TXT2IMG: "QwenImagePipeline",
    Mode.IMG2IMG: "QwenImageImg2ImgPipeline",
    Mode.INPAINT: "QwenImageInpaintPipeline",
}
# ComfyUI's published Wan 2.1 factors: Qwen-Image's VAE is Wan 2.1's with the same
# per-channel mean and spread, and the pipeline's latents are normalised by them, which
# is the space these factors map from.
WAN21_FACTORS: Factors = (
    [
        [-0.1299, -0.1692, 0.2932],
        [0.0671, 0.0406, 0.0442],
        [0.3568, 0.2548, 0.1747],
        [0.0372, 0.2344, 0.1420],
        [0.0313, 0.0189, -0.0328],
        [0.0296, -0.0956, -0.0665],
        [-0.3477, -0.4059, -0.2925],
        [0.0166, 0.1902, 0.1975],
        [-0.0412, 0.0267, -0.1364],
        [-0.1293, 0.0740, 0.1636],
        [0.0680, 0.3019, 0.1128],
        [0.0032, 0.0581, 0.0639],
        [-0.1251, 0.0927, 0.1699],
        [0.0060, -0.0633, 0.0005],
        [0.3477, 0.2275, 0.2950],
        [0.1984, 0.0913, 0.1861],
    ],
    [-0.1835, -0.0868, -0.3360],
)


def _is_text_to_image(facts: FolderFacts) -> bool:
    return not any(word in facts.class_name for word in ("Edit", "Layered", "ControlNet"))


def call_arguments(pipe: Any, args: dict[str, Any], variant: str) -> dict[str, Any]:
    """The engine's arguments in the form the Qwen-Image pipelines take them."""
    args = dict(args)
    args["true_cfg_scale"] = args.pop("guidance_scale", 4.0)
    if args.get("true_cfg_scale", 1.0) > 1.0 and not (args.get("negative_prompt") or "").strip():
        args["negative_prompt"] = " "
    return args


PROFILE = FamilyProfile(
    family=ModelFamily.QWEN_IMAGE,
    label="Qwen-Image",
    pipelines=_PIPELINES,
    variants=(
        Variant(
            name="",
            label="Qwen-Image",
            guidance=GuidanceKind.CFG,
            steps=30,
            width=1328,
            height=1328,
            guidance_scale=4.0,
            scheduler=SchedulerName.EULER,
        ),
    ),
    samplers=FLUX_SAMPLERS,  # the pipelines hand the scheduler its sigmas
    latent_channels=16,
    latent_rgb=WAN21_FACTORS,
    pipeline_names=frozenset(_PIPELINES.values()),
    denoiser_names=frozenset({"QwenImageTransformer2DModel"}),
    components=("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    flow=True,
    size_multiple=16,
    unpack=unpack_2x2,
    claims=_is_text_to_image,
    call_arguments=call_arguments,
)
