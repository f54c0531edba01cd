"""FLUX.2 klein: FLUX.2's rectified-flow transformer (4B or 9B) with a Qwen3 text
encoder; the VAE's 32-channel latents are cut into 2 x 2 patches (128 channels at
1/16 of the picture's size), normalised by the VAE's batch-norm statistics, and packed
into one token per patch.

Variants, told by model_index.json's is_distilled: the distilled klein (4 steps, no
guidance) and klein base (true CFG; diffusers takes no negative prompt text for it, so
the engine encodes the negative prompt itself and passes its embeddings). diffusers has
text to image and inpaint for klein; its image input is a reference picture for edits,
not image to image, so the form offers no image to image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.api import EngineError, ErrorKind, GuidanceKind, Mode, ModelFamily, SchedulerName
from engine.families.flux1 import FLUX_SAMPLERS
from engine.families.profile import Factors, FamilyProfile, FolderFacts, Variant

_PIPELINES = {
    Mode.TXT2IMG: "Flux2KleinPipeline",
    Mode.INPAINT: "Flux2KleinInpaintPipeline",
}
# ComfyUI's published FLUX.2 factors: 32 rows, one per VAE channel, applied after the
# 128 patch channels are put back as 2 x 2 pixels of 32 channels (see unpack).
FLUX2_FACTORS: Factors = (
    [
        [0.0058, 0.0113, 0.0073],
        [0.0495, 0.0443, 0.0836],
        [-0.0099, 0.0096, 0.0644],
        [0.2144, 0.3009, 0.3652],
        [0.0166, -0.0039, -0.0054],
        [0.0157, 0.0103, -0.0160],
        [-0.0398, 0.0902, -0.0235],
        [-0.0052, 0.0095, 0.0109],
        [-0.3527, -0.2712, -0.1666],
        [-0.0301, -0.0356, -0.0180],
        [-0.0107, 0.0078, 0.0013],
        [0.0746, 0.0090, -0.0941],
        [0.0156, 0.0169, 0.0070],
        [-0.0034, -0.0040, -0.0114],
        [0.0032, 0.0181, 0.0080],
        [-0.0939, -0.0008, 0.0186],
        [0.0018, 0.0043, 0.0104],
        [0.0284, 0.0056, -0.0127],
        [-0.0024, -0.0022, -0.0030],
        [0.1207, -0.0026, 0.0065],
        [0.0128, 0.0101, 0.0142],
        [0.0137, -0.0072, -0.0007],
        [0.0095, 0.0092, -0.0059],
        [0.0000, -0.0077, -0.0049],
        [-0.0465, -0.0204, -0.0312],
        [0.0095, 0.0012, -0.0066],
        [0.0290, -0.0034, 0.0025],
        [0.0220, 0.0169, -0.0048],
        [-0.0332, -0.0457, -0.0468],
        [-0.0085, 0.0389, 0.0609],
        [-0.0076, 0.0003, -0.0043],
        [-0.0111, -0.0460, -0.0614],
    ],
    [-0.0329, -0.0718, -0.0851],
)
PATCH_CHANNELS = 128  # 32 VAE channels x 2 x 2


def unpack(latents: np.ndarray, width: int, height: int, vae_scale: int = 8) -> np.ndarray:
    """klein's packed latents (tokens x 128, row by row over the 1/16 grid) -> 32 x h x w
    VAE-channel latents at 1/8 of the picture, as diffusers' _unpack_latents_with_ids and
    _unpatchify_latents put them back (the batch-norm scaling stays: the factors map
    from the normalised space)."""
    rows, cols = int(height) // (vae_scale * 2), int(width) // (vae_scale * 2)
    channels = latents.shape[-1] // 4
    x = latents.reshape(rows, cols, channels, 2, 2)  # token grid, then c, dy, dx
    return x.transpose(2, 0, 3, 1, 4).reshape(channels, rows * 2, cols * 2)


def call_arguments(pipe: Any, args: dict[str, Any], variant: str) -> dict[str, Any]:
    """The engine's arguments in the form the klein pipelines take them: no negative
    prompt text; for klein base, the negative prompt's embeddings; resumed latents on
    their grid."""
    args = dict(args)
    negative = args.pop("negative_prompt", None)
    latents = args.get("latents")
    if latents is not None and latents.ndim == 3:
        # A resume: the stored latents are tokens; prepare_latents takes the 1/16 grid.
        scale = 2 * int(pipe.vae_scale_factor)
        rows, cols = int(args["height"]) // scale, int(args["width"]) // scale
        args["latents"] = latents.permute(0, 2, 1).reshape(latents.shape[0], -1, rows, cols)
    if variant == "base" and negative and args.get("guidance_scale", 1.0) > 1.0:
        embeds, _ = pipe.encode_prompt(
            prompt=negative,
            device=pipe._execution_device,
            num_images_per_prompt=args.get("num_images_per_prompt", 1),
        )
        args["negative_prompt_embeds"] = embeds
    return args


# ---------------------------------------------------------------- klein's single files

FILE_PREFIX = "model.diffusion_model."  # ComfyUI's prefix, in some files
# Only FLUX.2 has one modulation for all single blocks (FLUX.1 has one per block).
_KLEIN_KEY = "single_stream_modulation.lin.weight"
# The config folder (engine/model_configs/) and size of each text width klein takes:
# 3 x the Qwen3 hidden size (2560 for Qwen3-4B, 4096 for Qwen3-8B).
_SIZES = {7680: ("flux2-klein-4b", "4B"), 12288: ("flux2-klein-9b", "9B")}
_FLUX2_DEV_CONTEXT = 15360  # 3 x Mistral Small's 5120


def is_klein_layout(keys: Sequence[str] | Mapping[str, object]) -> bool:
    return _KLEIN_KEY in keys or FILE_PREFIX + _KLEIN_KEY in keys


def file_shape(shapes: Mapping[str, Sequence[int]], name: str) -> list[int]:
    """A tensor's shape in BFL's layout, with or without ComfyUI's prefix ([] if absent)."""
    return [int(n) for n in (shapes.get(name) or shapes.get(FILE_PREFIX + name) or [])]


@dataclass(frozen=True)
class KleinFile:
    """What a klein transformer file's header says."""

    config_folder: str  # under engine/model_configs: "flux2-klein-4b" or "flux2-klein-9b"
    size: str  # "4B", "9B"; "" for a width no published klein has
    distilled: bool


def klein_file(path: Path, shapes: Mapping[str, Sequence[int]]) -> KleinFile:
    """Size from the context embedder's width; distilled or base from the file's name, as
    BFL names them (flux-2-klein-base-4b): the two hold the same tensors."""
    context = file_shape(shapes, "txt_in.weight")
    width = context[1] if len(context) == 2 else 0
    if width == _FLUX2_DEV_CONTEXT:
        raise EngineError(
            ErrorKind.MODEL,
            f"{path.name} is FLUX.2 dev (32B, with a Mistral text encoder), which DiffusionDesk "
            "does not run; use FLUX.2 klein 4B or 9B.",
        )
    folder, size = _SIZES.get(width, ("flux2-klein-4b", ""))
    return KleinFile(folder, size, file_variant(path.name) == "distilled")


def file_variant(name: str) -> str:
    """ "base" for a file named klein base (BFL's flux-2-klein-base-4b, or klein_base,
    klein-4b-base), else "distilled": the two hold the same tensors, only names differ."""
    after = Path(name).stem.lower().replace("_", "-").split("klein", 1)[-1]
    return "base" if "base" in after else "distilled"


def _variant(facts: FolderFacts) -> str:
    return "distilled" if bool(facts.index.get("is_distilled", False)) else "base"


def _is_klein(facts: FolderFacts) -> bool:
    # FLUX.2 dev shares the transformer class but is another model (Mistral text encoder).
    return facts.class_name != "Flux2Pipeline"


PROFILE = FamilyProfile(
    family=ModelFamily.FLUX2,
    label="FLUX.2 klein",
    pipelines=_PIPELINES,
    variants=(
        Variant(
            name="distilled",
            label="FLUX.2 klein",
            guidance=GuidanceKind.NONE,
            steps=4,
            width=1024,
            height=1024,
            guidance_scale=1.0,
            scheduler=SchedulerName.EULER,
        ),
        Variant(
            name="base",
            label="FLUX.2 klein base",
            guidance=GuidanceKind.CFG,
            steps=50,
            width=1024,
            height=1024,
            guidance_scale=4.0,
            scheduler=SchedulerName.EULER,
        ),
    ),
    samplers=FLUX_SAMPLERS,  # the pipelines hand the scheduler its sigmas
    latent_channels=32,
    latent_rgb=FLUX2_FACTORS,
    pipeline_names=frozenset(_PIPELINES.values()),
    denoiser_names=frozenset({"Flux2Transformer2DModel"}),
    components=("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    flow=True,
    size_multiple=16,
    unpack=unpack,
    variant_of=_variant,
    claims=_is_klein,
    call_arguments=call_arguments,
)
