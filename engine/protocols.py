"""The shapes the engine relies on where it crosses into other code: the model provider the
worker asks for models (ModelManager, or a test's stand-in), and the diffusers pipelines
and schedulers the runner drives. diffusers' own classes match them structurally; the
type checker reads these instead of following diffusers' partial annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from engine.api import Progress, ShouldCancel

if TYPE_CHECKING:
    import torch

    from engine.models import LoadedModel


class Scheduler(Protocol):
    """A diffusers scheduler, as the runner and the previews use it."""

    config: Any  # a FrozenDict of the scheduler's settings
    timesteps: torch.Tensor
    init_noise_sigma: Any  # float or 0-d tensor
    # Attributes rather than methods: the runner wraps them on one scheduler instance.
    step: Callable[..., Any]
    set_timesteps: Callable[..., None]


class Pipeline(Protocol):
    """A diffusers pipeline (text-to-image, image-to-image or inpaint) of one model."""

    scheduler: Any  # a Scheduler; Any so that diffusers' own attribute type fits
    unet: Any
    vae: Any

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def set_progress_bar_config(self, **kwargs: Any) -> None: ...

    def to(self, *args: Any, **kwargs: Any) -> Pipeline: ...


class PipelineClass(Protocol):
    """A pipeline class: builds a pipeline that shares another's components."""

    def from_pipe(self, pipeline: Pipeline, **kwargs: Any) -> Pipeline: ...


class ModelProvider(Protocol):
    """What the worker asks for models: engine.models.ModelManager implements it."""

    @property
    def device_description(self) -> str: ...

    def get(
        self,
        source: str,
        progress: Progress,
        should_cancel: ShouldCancel,
        files: Sequence[str] = (),
        roots: Sequence[str] = (),
    ) -> LoadedModel:
        """The model for source, loaded (and another released) if needed; files and roots:
        where a transformer-only file's text encoders and VAE are (ModelManager.get)."""
        ...

    def release(self) -> None:
        """Drop the loaded model and give its memory back."""
        ...
