"""What a model family is, as data: the FamilyProfile and Variant records.

One module per family (engine/families/sd1.py, flux1.py, ...) builds one FamilyProfile;
engine/families/__init__.py collects them. A profile says which diffusers pipeline serves
each mode (by class name, so this module and the window that reads defaults need no
torch), how the model is guided, its defaults per variant, the samplers that fit, its
latent format (channels, packing and the unpack rule), the linear latent-to-RGB factors
of its previews, and how to recognise it from a diffusers folder's model_index.json and
component configs. The sampling code asks the profile; it never branches on a family.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.api import EngineError, ErrorKind, GuidanceKind, Mode, ModelFamily, SchedulerName

Factors = tuple[list[list[float]], list[float]]
"""Linear latent-to-RGB map: [r, g, b] per latent channel, and a bias [r, g, b]."""

Unpack = Callable[[np.ndarray, int, int], np.ndarray]
"""unpack(one image's latents as the pipeline holds them, width, height in pixels)
-> C x h x w array, for families whose pipelines pack latents into tokens (FLUX). Each
token holds C channels x a 2 x 2 patch, in that order; the rule reads C from the tokens'
width, so previews unpack tokens of 3 colour channels with it (preview.PackedLatentRGB)."""


@dataclass(frozen=True)
class FolderFacts:
    """What detection reads from a diffusers folder (or a downloaded hub snapshot)."""

    index: Mapping[str, Any]  # model_index.json
    configs: Mapping[str, Mapping[str, Any]]  # component name -> its config.json
    name: str = ""  # the folder's name or hub id, for variants only the name tells

    @property
    def class_name(self) -> str:
        return str(self.index.get("_class_name", ""))

    def component_class(self, component: str) -> str:
        entry = self.index.get(component)
        if isinstance(entry, list) and len(entry) == 2 and entry[1] is not None:
            return str(entry[1])
        return ""

    def config(self, component: str) -> Mapping[str, Any]:
        return self.configs.get(component, {})


@dataclass(frozen=True)
class Variant:
    """One variant of a family: its guidance and the defaults the form starts from."""

    name: str  # "" for the family's plain model; "dev", "schnell", "fill", "turbo" ...
    label: str  # what the status bar says, e.g. "FLUX.1 schnell"
    guidance: GuidanceKind
    steps: int
    width: int
    height: int
    guidance_scale: float  # CFG or distilled guidance; unused with GuidanceKind.NONE
    scheduler: SchedulerName
    # Pipelines that differ from the family's, by mode; None: the variant lacks the mode.
    pipelines: Mapping[Mode, str | None] = field(default_factory=dict)
    # Samplers that fit this variant, where they differ from the family's (SANA-Sprint).
    samplers: tuple[SchedulerName, ...] = ()
    # A distilled variant that also takes true CFG with a negative prompt, off at 1
    # (FLUX.1 dev: the pipelines' true_cfg_scale; twice the work per step when on).
    true_cfg: bool = False


@dataclass(frozen=True)
class FamilyProfile:
    """A model family: data plus the few functions that differ between families."""

    family: ModelFamily
    label: str  # "Stable Diffusion 3", "FLUX.1"
    pipelines: Mapping[Mode, str]  # diffusers pipeline class names per mode
    variants: tuple[Variant, ...]  # the first is the default
    samplers: tuple[SchedulerName, ...]  # those that fit, in the order the form lists them
    latent_channels: int
    latent_rgb: Factors
    pipeline_names: frozenset[str]  # model_index.json _class_name values of this family
    denoiser_names: frozenset[str] = frozenset()  # its unet/transformer class names
    # model_index.json entries a folder of this family must have.
    components: tuple[str, ...] = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    # Flow matching: x_t = (1 - sigma) x0 + sigma noise, the model predicts the velocity,
    # x0 = x_t - sigma v, and the flow-matching schedulers serve the sampler names.
    flow: bool = False
    unpack: Unpack | None = None  # None: latents are C x h x w already
    # Modes whose pipelines hand the step callback every tensor they double for CFG, so
    # the guidance cut-off can halve them (SD 3's image-to-image and inpaint keep their
    # pooled embeddings to themselves). Models without CFG have none.
    cfg_cutoff_modes: tuple[Mode, ...] = tuple(Mode)
    size_multiple: int = 8  # width and height: the VAE's factor times the patch size
    tiny_vae_folder: str = ""  # folder under resources/ with this family's tiny autoencoder
    # Extra test when families share class names (SD 1 / SD 2); None: class names decide.
    claims: Callable[[FolderFacts], bool] | None = None
    variant_of: Callable[[FolderFacts], str] = lambda facts: ""
    # The pipeline's keyword arguments as this family's pipelines take them
    # (pipe, arguments, variant) -> arguments; None: as they are.
    call_arguments: Callable[[Any, dict[str, Any], str], dict[str, Any]] | None = None

    def variant(self, name: str) -> Variant:
        """The named variant; an unknown name falls back to the default one."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        return self.variants[0]

    def pipeline_name(self, mode: Mode, variant: str = "") -> str | None:
        """The diffusers class serving mode for the variant, or None where there is none."""
        overrides = self.variant(variant).pipelines
        if mode in overrides:
            return overrides[mode]
        return self.pipelines.get(mode)

    def samplers_for(self, variant: str = "") -> tuple[SchedulerName, ...]:
        """The samplers that fit the variant, in the order the form lists them."""
        return self.variant(variant).samplers or self.samplers

    def cutoff_modes(self, variant: str = "") -> tuple[Mode, ...]:
        """Where the guidance cut-off works for the variant (none without true CFG)."""
        if self.variant(variant).guidance is not GuidanceKind.CFG:
            return ()
        return self.cfg_cutoff_modes

    def modes(self, variant: str = "") -> tuple[Mode, ...]:
        return tuple(m for m in Mode if self.pipeline_name(m, variant) is not None)

    def pipeline_class(self, mode: Mode, variant: str = "") -> Any:
        """The diffusers pipeline class for mode (imports diffusers)."""
        name = self.pipeline_name(mode, variant)
        if name is None:
            label = self.variant(variant).label
            raise EngineError(
                ErrorKind.BAD_INPUT,
                f"{label} models cannot do {MODE_WORDS[mode]}; choose another mode or model.",
            )
        return getattr(importlib.import_module("diffusers"), name)

    def matches(self, facts: FolderFacts) -> bool:
        named = facts.class_name in self.pipeline_names or any(
            facts.component_class(c) in self.denoiser_names for c in ("transformer", "unet")
        )
        return named and (self.claims is None or self.claims(facts))


def accepts(pipeline_class: Any, argument: str) -> bool:
    """Whether a diffusers pipeline class's __call__ takes `argument` (FluxFillPipeline
    has no padding_mask_crop; SD's image-to-image no width)."""
    return argument in inspect.signature(pipeline_class.__call__).parameters


MODE_WORDS = {
    Mode.TXT2IMG: "text to image",
    Mode.IMG2IMG: "image to image",
    Mode.INPAINT: "inpainting",
}


def unpack_2x2(latents: np.ndarray, width: int, height: int, vae_scale: int = 8) -> np.ndarray:
    """FLUX-style packed latents (tokens x 4C, each token a 2 x 2 patch) -> C x h x w,
    as diffusers' FluxPipeline._unpack_latents does, in numpy."""
    h = 2 * (int(height) // (vae_scale * 2))
    w = 2 * (int(width) // (vae_scale * 2))
    channels = latents.shape[-1] // 4
    x = latents.reshape(h // 2, w // 2, channels, 2, 2)
    return x.transpose(2, 0, 3, 1, 4).reshape(channels, h, w)
