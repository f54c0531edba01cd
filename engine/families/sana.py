"""SANA and SANA-Sprint: a linear-attention DiT over the deep-compression autoencoder's
(DC-AE) 32-channel latents, 32x smaller than the picture, with Gemma 2 as the text
encoder.

SANA is flow matching with true CFG and a negative prompt (DPM-Solver++ in its flow
form, as the released models ship). SANA-Sprint is SANA distilled to one to four steps
with the sCM (TrigFlow) scheduler and a guidance scale the model takes as input, so it
has no negative prompt; it keeps its own scheduler. diffusers has text to image for both
and image to image for Sprint only; neither has an inpaint pipeline (the form says so).

Sizes: the pipelines would snap the size to the nearest of their trained aspect ratios
and scale the result back ("resolution binning"); the engine asks for the size the
person chose instead (multiples of 32), so what comes out is exactly that size.

No linear latent-to-RGB factors are published for DC-AE: they are fitted on the loaded
autoencoder itself (engine/latent_fit.py) when the model loads.
"""

from __future__ import annotations

from typing import Any

from engine.api import GuidanceKind, Mode, ModelFamily, SchedulerName
from engine.families.profile import Factors, FamilyProfile, FolderFacts, Variant

_PIPELINES = {Mode.TXT2IMG: "SanaPipeline"}
_SPRINT_PIPELINES = {
    Mode.TXT2IMG: "SanaSprintPipeline",
    Mode.IMG2IMG: "SanaSprintImg2ImgPipeline",
    Mode.INPAINT: None,
}
FIT_ON_LOAD: Factors = ([], [0.0, 0.0, 0.0])  # no rows: fitted on the loaded VAE
SPRINT_STEPS_WITH_MIDPOINT = 2  # Sprint's fixed intermediate timestep needs exactly 2 steps
# The 2K and 4K models, by their transformer's sample_size (in latent pixels). They start
# at 2048 px, the 2K model's own size and the largest the engine takes (2048² pixels,
# engine/validation.py); the 1024 px default would waste the 4K model.
_HIGH_RESOLUTION = {64: "2k", 128: "4k"}
_HIGH_RESOLUTION_SIDE = 2048


def _variant(facts: FolderFacts) -> str:
    sprint = (
        facts.class_name.startswith("SanaSprint")
        or facts.component_class("scheduler") == "SCMScheduler"
        or bool(facts.config("transformer").get("guidance_embeds", False))
    )
    if sprint:
        return "sprint"
    sample_size = facts.config("transformer").get("sample_size") or 32
    return _HIGH_RESOLUTION.get(int(sample_size), "")


def call_arguments(pipe: Any, args: dict[str, Any], variant: str) -> dict[str, Any]:
    """The engine's arguments in the form the SANA pipelines take them."""
    args = dict(args, use_resolution_binning=False)
    if args.get("negative_prompt", "") is None:  # the engine's "none"; SANA wants text
        args["negative_prompt"] = ""
    if variant == "sprint":
        args.pop("negative_prompt", None)
        if "latents" in args:  # a resume: Sprint scales its starting latents by sigma_data
            args["latents"] = args["latents"] / pipe.scheduler.config.sigma_data
        if args.get("num_inference_steps") != SPRINT_STEPS_WITH_MIDPOINT:
            args["intermediate_timesteps"] = None
    return args


PROFILE = FamilyProfile(
    family=ModelFamily.SANA,
    label="SANA",
    pipelines=_PIPELINES,
    variants=(
        Variant(
            name="",
            label="SANA",
            guidance=GuidanceKind.CFG,
            steps=20,
            width=1024,
            height=1024,
            guidance_scale=4.5,
            scheduler=SchedulerName.DPMPP_2M,
        ),
        *(
            Variant(
                name=name,
                label=f"SANA {name.upper()}",
                guidance=GuidanceKind.CFG,
                steps=20,
                width=_HIGH_RESOLUTION_SIDE,
                height=_HIGH_RESOLUTION_SIDE,
                guidance_scale=4.5,
                scheduler=SchedulerName.DPMPP_2M,
            )
            for name in _HIGH_RESOLUTION.values()
        ),
        Variant(
            name="sprint",
            label="SANA-Sprint",
            guidance=GuidanceKind.DISTILLED,
            steps=2,
            width=1024,
            height=1024,
            guidance_scale=4.5,
            scheduler=SchedulerName.SCM,
            pipelines=_SPRINT_PIPELINES,
            samplers=(SchedulerName.SCM,),
        ),
    ),
    samplers=(SchedulerName.DPMPP_2M, SchedulerName.EULER, SchedulerName.UNIPC),
    latent_channels=32,
    latent_rgb=FIT_ON_LOAD,
    pipeline_names=frozenset(
        {*_PIPELINES.values(), "SanaSprintPipeline", "SanaSprintImg2ImgPipeline"}
    ),
    denoiser_names=frozenset({"SanaTransformer2DModel"}),
    components=("transformer", "vae", "text_encoder", "tokenizer", "scheduler"),
    flow=True,
    size_multiple=32,
    variant_of=_variant,
    call_arguments=call_arguments,
)
