"""What the form offers for the chosen model's family (engine/families/), without Qt.

The family and variant of the model are known from its files before it loads (a local
diffusers folder, the starter model) or from the engine once it has loaded it (hub ids,
single files: the Started event names them). The form then shows only what the family
uses: the negative prompt and CFG scale for true-CFG families, a distilled guidance scale
for FLUX.1 dev (and its optional true CFG, which brings the negative prompt back), neither
for few-step distilled models; the samplers that fit; and, when
the person switches from one known family or variant to another, that variant's defaults
for steps, size, guidance and sampler.
"""

from __future__ import annotations

from engine import families
from engine.api import GuidanceKind, ModelFamily
from engine.schedulers import NAMES
from guiapp.state import ViewModel

GUIDANCE_LABELS = {
    GuidanceKind.CFG: "Guidance",
    GuidanceKind.DISTILLED: "Distilled guidance",
}
GUIDANCE_TIPS = {
    GuidanceKind.CFG: "Guidance (CFG) scale: how strictly to follow the prompt.",
    GuidanceKind.DISTILLED: (
        "Distilled guidance: the guidance strength this model was trained to take "
        "(no negative prompt)."
    ),
}


def variant_of(form: ViewModel) -> families.Variant | None:
    if form.family not in families.PROFILES:
        return None
    return families.profile(form.family).variant(form.variant)


def guidance_kind(form: ViewModel) -> GuidanceKind:
    """CFG until the family is known (the SD families' and the starter's kind)."""
    variant = variant_of(form)
    return variant.guidance if variant is not None else GuidanceKind.CFG


def true_cfg_offered(form: ViewModel) -> bool:
    """Whether the variant takes true CFG beside its distilled guidance (FLUX.1 dev)."""
    variant = variant_of(form)
    return variant is not None and variant.true_cfg


def negative_prompt_used(form: ViewModel) -> bool:
    """True-CFG families, and FLUX.1 dev once its true CFG is above 1."""
    return guidance_kind(form) is GuidanceKind.CFG or (
        true_cfg_offered(form) and form.true_cfg_scale > 1
    )


def samplers(form: ViewModel) -> tuple[str, ...]:
    if form.family not in families.PROFILES:
        return NAMES
    return tuple(s.value for s in families.profile(form.family).samplers_for(form.variant))


def size_step(form: ViewModel) -> int:
    """The family's size grid (16 for SD 3 and FLUX, 8 for the SD families)."""
    if form.family not in families.PROFILES:
        return 8
    return families.profile(form.family).size_multiple


def adopt(form: ViewModel, family: str, variant: str) -> None:
    """The chosen model is of this family and variant ("" family: not known yet)."""
    if family and family not in {f.value for f in ModelFamily}:
        family, variant = "", ""
    form.variant = variant
    form.family = family
    chosen = variant_of(form)
    if chosen is None:
        return
    before, form.last_known_model = form.last_known_model, (family, variant)
    if before == (family, variant):
        return
    if before[0]:  # switched from another known model: start from this one's defaults
        form.true_cfg_scale = 1.0  # off, the default of the one family that takes it
        form.steps = chosen.steps
        form.width, form.height = chosen.width, chosen.height
        if chosen.guidance is not GuidanceKind.NONE:
            form.guidance_scale = chosen.guidance_scale
        form.scheduler = chosen.scheduler.value
    elif form.scheduler not in samplers(form):
        form.scheduler = chosen.scheduler.value


def follow_model(form: ViewModel) -> None:
    """Keep form.family and form.variant in step with form.model, from its files."""

    def described(source: str) -> None:
        found = families.describe_source(source)
        if found is None:  # not known before loading: the engine's Started event will say
            adopt(form, "", "")
            return
        profile, variant = found
        adopt(form, profile.family.value, variant)

    form.signal("model").connect(described)
    described(form.model)
