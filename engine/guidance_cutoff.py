"""Guidance cut-off: classifier-free guidance for the first part of the steps only.

The late steps refine detail that guidance hardly changes, so stopping guidance after a
chosen fraction of the steps runs the UNet on half the batch from then on, which is
nearly half the time of those steps. diffusers' SDCFGCutoffCallback and
SDXLCFGCutoffCallback do this; the engine does it inside its own step callback, so
previews, cancel and "continue from here" keep working, and unlike those callbacks it
keeps every image of a batch (they keep one row of the embeddings) and halves the
inpainting pipelines' doubled mask tensors as well.

The rule is theirs: with `fraction` f and n steps, steps 0 .. int(n * f) (0-based) are
guided and the rest are not; 1.0 (or None) never cuts.
"""

from __future__ import annotations

from typing import Any

# Tensors a pipeline doubles (unconditional half first) while it guides, and takes back
# from the step callback's return value.
_DOUBLED = (
    "prompt_embeds",
    "pooled_prompt_embeds",  # SD 3
    "add_text_embeds",
    "add_time_ids",
    "mask",
    "masked_image_latents",
)
UNSUPPORTED = "The guidance cut-off is not available for {what}; the run was guided throughout."


def is_on(fraction: float | None) -> bool:
    """None and 1.0 (the window's "off") never cut."""
    return fraction is not None and fraction < 1


def last_guided_step(total: int, fraction: float) -> int:
    """The 0-based index of the last guided step among a run's `total` steps."""
    return int(total * fraction)


class GuidanceCutoff:
    """Ends guidance at the cut-off step of a run of `total` steps, of which `done` ran
    before this pipeline call (a resumed run). A fresh run learns its total (which
    image-to-image shortens) at its first step, through set_total()."""

    def __init__(self, fraction: float | None, total: int = 0, done: int = 0) -> None:
        self.fraction = fraction if is_on(fraction) else None
        self.done = done
        self.last_guided: int | None = None
        self.cut_at: int | None = None  # the run's step index where guidance stopped
        self.set_total(total)

    def set_total(self, total: int) -> None:
        if self.fraction is not None:
            self.last_guided = last_guided_step(total, self.fraction)

    @property
    def guided_from_start(self) -> bool:
        """False when a resumed run starts past the cut-off: run it unguided throughout."""
        return self.last_guided is None or self.done <= self.last_guided

    def tensor_inputs(self, pipe: Any) -> list[str]:
        """The doubled tensors this pipeline hands to its step callback."""
        if self.fraction is None:
            return []
        offered = set(getattr(pipe, "_callback_tensor_inputs", ()))
        return [name for name in _DOUBLED if name in offered]

    def __call__(self, pipe: Any, index: int, tensors: dict[str, Any]) -> dict[str, Any]:
        """Called at the end of step `index` of this call; returns the tensors to use."""
        if self.last_guided is None or self.done + index != self.last_guided:
            return tensors
        if not getattr(pipe, "do_classifier_free_guidance", False):
            return tensors
        for name in self.tensor_inputs(pipe):
            value = tensors.get(name)
            if value is not None:
                tensors[name] = value.chunk(2)[1]  # the conditional half, every image
        pipe._guidance_scale = 0.0  # the pipeline reads it each step: guidance off
        self.cut_at = self.done + index
        return tensors
