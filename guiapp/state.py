"""The window's view-model: the form's parameters as observable properties.

Each property has a `<name>Changed` signal that is emitted only when the value
really changes (setting the same value again is silent), so widgets bound in both
directions never loop. The view-model knows no widgets and no engine: it turns its
values into an immutable GenerationRequest.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from PIL import Image
from PySide6.QtCore import QObject, Signal

from engine.api import STARTER_MODEL, GenerationRequest, SchedulerName


@dataclass
class FormValues:
    """Plain values of the form (also what QSettings stores between runs)."""

    prompt: str = "a red circle on a blue background"
    negative_prompt: str = ""
    steps: int = 20
    guidance_scale: float = 5.0
    seed: int = 0
    random_seed: bool = True
    width: int = 128
    height: int = 128
    batch_size: int = 1
    scheduler: str = SchedulerName.DPMPP_2M.value
    model: str = STARTER_MODEL
    strength: float = 0.75
    mask_blur: int = 4
    inpaint_only_masked: bool = False
    show_noisy: bool = False


PROPERTY_NAMES: tuple[str, ...] = tuple(f.name for f in fields(FormValues))


def _observable(name: str, kind: type) -> property:
    signal_name = f"{name}Changed"

    def getter(self: ViewModel) -> Any:
        return self._values[name]

    def setter(self: ViewModel, value: Any) -> None:
        value = kind(value)
        if self._values[name] == value:
            return
        self._values[name] = value
        getattr(self, signal_name).emit(value)
        self.changed.emit(name, value)

    return property(getter, setter, doc=f"observable {name}; emits {signal_name} on change")


class ViewModel(QObject):
    """Observable form parameters plus the last used seed."""

    changed = Signal(str, object)  # any property: (name, new value)
    promptChanged = Signal(str)
    negative_promptChanged = Signal(str)
    stepsChanged = Signal(int)
    guidance_scaleChanged = Signal(float)
    seedChanged = Signal(object)  # seeds can exceed a 32-bit int
    random_seedChanged = Signal(bool)
    widthChanged = Signal(int)
    heightChanged = Signal(int)
    batch_sizeChanged = Signal(int)
    schedulerChanged = Signal(str)
    modelChanged = Signal(str)
    strengthChanged = Signal(float)
    mask_blurChanged = Signal(int)
    inpaint_only_maskedChanged = Signal(bool)
    show_noisyChanged = Signal(bool)

    prompt = _observable("prompt", str)
    negative_prompt = _observable("negative_prompt", str)
    steps = _observable("steps", int)
    guidance_scale = _observable("guidance_scale", float)
    seed = _observable("seed", int)
    random_seed = _observable("random_seed", bool)
    width = _observable("width", int)
    height = _observable("height", int)
    batch_size = _observable("batch_size", int)
    scheduler = _observable("scheduler", str)
    model = _observable("model", str)
    strength = _observable("strength", float)
    mask_blur = _observable("mask_blur", int)
    inpaint_only_masked = _observable("inpaint_only_masked", bool)
    show_noisy = _observable("show_noisy", bool)

    def __init__(self, values: FormValues | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._values: dict[str, Any] = vars(values or FormValues()).copy()
        self.last_seed: int | None = None

    def values(self) -> FormValues:
        return FormValues(**self._values)

    def set_values(self, values: FormValues) -> None:
        for name in PROPERTY_NAMES:
            setattr(self, name, getattr(values, name))

    def apply_request(self, request: GenerationRequest) -> None:
        """Fill the form from a request (reuse parameters of a result or a PNG)."""
        self.prompt = request.prompt
        self.negative_prompt = request.negative_prompt
        self.steps = request.steps
        self.guidance_scale = request.guidance_scale
        if request.seed is not None:
            self.seed = request.seed
            self.random_seed = False
        self.width = request.width
        self.height = request.height
        self.batch_size = request.batch_size
        self.scheduler = request.scheduler
        self.model = request.model
        self.strength = request.strength
        self.mask_blur = request.mask_blur
        self.inpaint_only_masked = request.inpaint_only_masked

    def build_request(
        self,
        init_image: Image.Image | None = None,
        mask: Image.Image | None = None,
        seed: int | None = None,
    ) -> GenerationRequest:
        """The request the form describes; with an image, image-to-image or inpaint."""
        if seed is None and not self.random_seed:
            seed = self.seed
        return GenerationRequest(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            seed=seed,
            batch_size=self.batch_size,
            width=self.width,
            height=self.height,
            scheduler=self.scheduler,
            model=self.model,
            init_image=init_image,
            strength=self.strength,
            mask=mask,
            mask_blur=self.mask_blur,
            inpaint_only_masked=self.inpaint_only_masked,
        )
