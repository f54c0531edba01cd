"""Helpers for the engine tests: a stand-in model manager serving tiny models, requests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tiny_models import tiny_pipeline, tiny_sdxl_pipeline

from engine.api import (
    EngineError,
    ErrorKind,
    Event,
    GenerationRequest,
    JobCancelled,
    ModelFamily,
    Progress,
    ShouldCancel,
)
from engine.models import LoadedModel

# Seconds to wait for a job: generous, because the tests share a busy machine. Not a
# timing assertion: a healthy tiny job takes well under a second.
WAIT = 600
TINY = "tiny"
TINY_INPAINT = "tiny-inpaint"
TINY_SDXL = "tiny-sdxl"


class TinyModels:
    """The ModelManager surface, serving tiny pipelines built once per test session."""

    device_description = "cpu (float32)"

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._built: dict[str, LoadedModel] = {}
        self.loads: list[str] = []
        self.released = 0
        self.before_load: Callable[[], None] | None = None
        self.variants: dict[str, LoadedModel] = {}  # extra sources, e.g. with a tiny VAE

    def get(
        self, source: str, progress: Progress, should_cancel: ShouldCancel, *_: object, **__: object
    ) -> LoadedModel:
        if source in self.variants:
            return self.variants[source]
        if source not in (TINY, TINY_INPAINT, TINY_SDXL):
            raise EngineError(ErrorKind.MODEL, f"The model {source} does not exist.")
        for i, stage in enumerate(("tokenizer", "text_encoder", "unet", "vae")):
            if should_cancel():
                raise JobCancelled()
            progress(f"loading {stage}", i / 4)
            if self.before_load is not None:
                self.before_load()
        if source not in self._built:
            inpaint = source == TINY_INPAINT
            if source == TINY_SDXL:
                pipe = tiny_sdxl_pipeline(self._tmp / source)
            else:
                pipe = tiny_pipeline(self._tmp / source, inpaint_unet=inpaint)
            self._built[source] = LoadedModel(
                source=source,
                family=ModelFamily.SDXL if source == TINY_SDXL else ModelFamily.SD1,
                pipe=pipe,
                latent_rgb=None,
                tiny_vae=None,
                is_inpaint_unet=inpaint,
                device=torch.device("cpu"),
                dtype=torch.float32,
            )
        self.loads.append(source)
        return self._built[source]

    def release(self) -> None:
        self.released += 1


class Recorder:
    """Collects events; wait for a job's terminal event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, job_id: int, kind: type | None = None) -> list:
        with self._lock:
            return [
                e
                for e in self.events
                if e.job_id == job_id and (kind is None or isinstance(e, kind))
            ]


def request(**changes: object) -> GenerationRequest:
    base = GenerationRequest(
        prompt="a red circle", steps=3, width=32, height=32, seed=1, model=TINY, guidance_scale=3.0
    )
    return base.with_changes(**changes)


def picture(size: tuple[int, int] = (32, 32)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def tiny_autoencoder():
    """A random-weight tiny autoencoder (TAESD's shape, a few channels wide)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    )


def box_mask(size: tuple[int, int] = (32, 32), box: tuple[int, int, int, int] = (8, 8, 21, 19)):
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask
