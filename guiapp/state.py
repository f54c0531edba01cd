"""The window's form: every generation parameter as an observable property.

A field is declared once, as a Property below. A property named like a
GenerationRequest field goes into the request (and is filled back from one by
"Reuse parameters"); `persist=True` ones are kept between runs by guiapp.settings.
The view-model knows no widgets and no engine: it turns its values into an immutable
GenerationRequest, keeping within the engine's own limits (engine.validation).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from PIL import Image
from PySide6.QtCore import QObject

from engine.api import STARTER_MODEL, GenerationRequest, SchedulerName
from engine.validation import max_steps_for
from guiapp import upscale_form
from guiapp.properties import Observable, Property

FormValues = dict[str, Any]
"""The form's persisted values by property name (what QSettings stores between runs)."""

REQUEST_FIELDS = frozenset(f.name for f in fields(GenerationRequest))


class ViewModel(Observable):
    """Observable form parameters plus the last used seed."""

    prompt = Property("a red circle on a blue background")
    negative_prompt = Property("")
    steps = Property(20)
    guidance_scale = Property(5.0)
    true_cfg_scale = Property(1.0)  # FLUX.1 dev's true CFG beside its guidance; 1: off
    seed = Property(0)
    random_seed = Property(True)
    width = Property(128)
    height = Property(128)
    batch_size = Property(1)
    scheduler = Property(SchedulerName.DPMPP_2M.value)
    model = Property(STARTER_MODEL)
    strength = Property(0.75)
    mask_blur = Property(4)
    inpaint_only_masked = Property(False)
    show_noisy = Property(False)
    guidance_cutoff = Property(1.0)  # 1.0: off
    fast_decode = Property(False)
    deep_cache = Property(1)  # 1: off
    clip_skip = Property(1)
    vae = Property("")
    # The model folders (from the library) where LoRAs, embeddings and VAEs are found,
    # and the VAE files found there: this machine's, so never persisted or reused.
    model_folders: Property[tuple[str, ...]] = Property((), persist=False)
    vae_choices: Property[tuple[str, ...]] = Property((), persist=False)
    # Text-encoder and VAE files a transformer-only model file needs, chosen in a file
    # dialog when the engine said one was missing (guiapp/widgets/error_area.py).
    model_files: Property[tuple[str, ...]] = Property((), persist=False)
    # The chosen model's family and variant ("": not known yet); guiapp/family_form.py
    # keeps them and decides from them what the form offers.
    family = Property("", persist=False)
    variant = Property("", persist=False)
    # Hires fix and upscale (guiapp/upscale_form.py turns them into the request's records).
    hires_enabled = Property(False)
    hires_scale = Property(2.0)
    hires_upscaler = Property("Latent")
    hires_steps = Property(0)
    hires_denoise = Property(0.55)
    hires_prompt = Property("")  # empty: the prompt's
    upscale_scale = Property(2.0)
    upscale_upscaler = Property("Lanczos")
    upscale_sd_tiles = Property(False)
    upscaler_choices: Property[tuple[str, ...]] = Property((), persist=False)

    def __init__(self, values: FormValues | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.last_seed: int | None = None
        # The family and variant of the last model whose family was known: switching
        # from it to another starts from the other's defaults (guiapp/family_form.py).
        self.last_known_model: tuple[str, str] = ("", "")
        self.signal("scheduler").connect(self._keep_steps_within_scheduler)
        if values:
            self.set_values(values)

    def _keep_steps_within_scheduler(self, scheduler: str) -> None:
        self.steps = min(self.steps, max_steps_for(scheduler))

    @classmethod
    def defaults(cls) -> FormValues:
        return {p.name: p.default for p in cls.properties() if p.persist}

    def values(self) -> FormValues:
        return {p.name: getattr(self, p.name) for p in self.properties() if p.persist}

    def set_values(self, values: FormValues) -> None:
        """Set the named properties; unknown names and values of the wrong kind are skipped."""
        known = {p.name for p in self.properties()}
        for name, value in values.items():
            if name in known:
                try:
                    setattr(self, name, value)
                except (TypeError, ValueError):
                    continue
        self._keep_steps_within_scheduler(self.scheduler)

    def apply_request(self, request: GenerationRequest) -> None:
        """Fill the form from a request (reuse parameters of a result or a PNG)."""
        values = {
            p.name: getattr(request, p.name)
            for p in self.properties()
            if p.name in REQUEST_FIELDS and p.persist and getattr(request, p.name) is not None
        }
        # The model first: a new family's defaults (guiapp/family_form.py) must not
        # overwrite the reused steps, size and guidance.
        self.set_values({"model": values.pop("model")} if "model" in values else {})
        self.set_values(values)
        if request.seed is not None:
            self.random_seed = False
        upscale_form.apply_hires(self, request.hires)
        upscale_form.apply_upscale(self, request.upscale)

    def build_request(
        self,
        init_image: Image.Image | None = None,
        mask: Image.Image | None = None,
        seed: int | None = None,
    ) -> GenerationRequest:
        """The request the form describes; with an image, image-to-image or inpaint."""
        values = {
            p.name: getattr(self, p.name) for p in self.properties() if p.name in REQUEST_FIELDS
        }
        if seed is None and not self.random_seed:
            seed = self.seed
        values.update(seed=seed, init_image=init_image, mask=mask)
        if init_image is None:
            values["hires"] = upscale_form.hires_of(self)
        return GenerationRequest(**values)
