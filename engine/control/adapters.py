"""T2I adapters at run time: reading them from files, and feeding their features to the UNet.

diffusers' adapter pipelines (StableDiffusion(XL)AdapterPipeline) run text to image only
and take only the old per-step callback. Instead, an adapter's features are computed
once per job, exactly as those pipelines compute them, and handed to the UNet of the
family's regular pipelines as `down_intrablock_additional_residuals` by a forward
pre-hook: the UNet's own path for adapters (the one the adapter pipelines use). So
adapters run in text to image, image to image and inpaint, beside ControlNets (their
residuals take the UNet's other path), with the usual previews, cancel, guidance
cut-off and deep cache. Each unit keeps its own weight and its own part of the steps
(start/end, as ControlNet units count them; SDXL's adapter_conditioning_factor is end
with start 0). tests/control/test_adapters.py shows the pixels equal the adapter
pipelines' in text to image.

A single file is read in the diffusers layout or TencentARC's original ones
(adapter_keys.py), with the config shipped in engine/model_configs/t2i_adapter/ for its
type; the file's shapes decide widths and depth, so variants of the published
architectures load too. A pickle (.pth) is read only with the pickle consent, and then
as plain weights. Worker thread only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import T2IAdapter
from PIL import Image
from safetensors.torch import load_file

from engine.api import ControlUnit, EngineError, ErrorKind
from engine.control import adapter_keys
from engine.model_code import load_pickle_weights
from engine.model_files import ALLOW_PICKLE_HINT, PICKLE_REASON, is_pickle
from engine.resources import model_configs_dir

if TYPE_CHECKING:
    from engine.models import LoadedModel


def _model_error(message: str) -> EngineError:
    return EngineError(ErrorKind.MODEL, message)


def _read_state(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if is_pickle(path):
        if not allow_pickle:
            raise _model_error(
                f"{path.name} is a pickle file and was refused because {PICKLE_REASON}; "
                f"use a .safetensors version, or {ALLOW_PICKLE_HINT}."
            )
        state = load_pickle_weights(path)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    else:
        try:
            state = load_file(str(path))
        except Exception as exc:  # any reader failure means "not a safetensors file"
            raise _model_error(f"{path.name} is not a readable .safetensors file: {exc}") from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise _model_error(f"{path.name} does not hold a table of named tensors.")
    return state


def config_for(shapes: dict[str, Sequence[int]]) -> dict[str, Any]:
    """The shipped config of the adapter's type, with the widths and depth its tensors have."""
    found = adapter_keys.architecture(shapes)
    folder = (
        model_configs_dir() / "t2i_adapter" / adapter_keys.CONFIG_FOLDERS[found["adapter_type"]]
    )
    config = json.loads((folder / "config.json").read_text())
    return {**config, **found}


def load_file_adapter(
    path: Path, device: torch.device, dtype: torch.dtype, *, allow_pickle: bool
) -> T2IAdapter:
    """A T2I adapter from one file in the diffusers or an original TencentARC layout."""
    state = _read_state(path, allow_pickle)
    try:
        names = adapter_keys.to_diffusers(list(state))
        renamed = {names[k]: v for k, v in state.items()}
        config = config_for({k: tuple(v.shape) for k, v in renamed.items()})
    except adapter_keys.NotAnAdapter as exc:
        raise _model_error(f"{path.name} cannot be used as a T2I adapter: {exc}.") from exc
    with torch.device("meta"):
        adapter = T2IAdapter.from_config(config)
    try:
        adapter.load_state_dict(renamed, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise _model_error(
            f"{path.name} does not match a T2I adapter's layout ({first}); the file may be "
            "damaged or of a kind DiffusionDesk does not know."
        ) from exc
    return adapter.to(device=device, dtype=dtype).eval()


def adapter_input(control_map: Image.Image, adapter: T2IAdapter) -> torch.Tensor:
    """The adapter's input from a unit's control map (already at the picture's size), as
    the adapter pipelines make it: 0..1, channels first; grey for one-channel adapters."""
    grey = adapter.config.in_channels == 1
    pixels = np.asarray(control_map.convert("L" if grey else "RGB"))
    batch = pixels[None, ..., None] if pixels.ndim == 2 else pixels[None, ...]
    tensor = torch.from_numpy(batch.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return tensor.to(device=adapter.device, dtype=adapter.dtype)


# ----------------------------------------------------------------------------- fitting


def expected_shapes(unet: Any, width: int, height: int, scale: int) -> list[tuple[int, ...]]:
    """The shape (channels, h, w) of the residual each UNet down block adds, at a size."""
    h, w = height // scale, width // scale
    factor = 1
    shapes: list[tuple[int, ...]] = []
    for block, channels in zip(unet.down_blocks, unet.config.block_out_channels, strict=False):
        cross = bool(getattr(block, "has_cross_attention", False))
        down = getattr(block, "downsamplers", None) is not None
        if cross:  # added inside the block, before its downsampler
            shapes.append((channels, -(-h // factor), -(-w // factor)))
        if down:
            factor *= 2
        if not cross:  # added to the block's output
            shapes.append((channels, -(-h // factor), -(-w // factor)))
    return shapes


def check_fits(
    name: str,
    adapter: T2IAdapter,
    features: list[torch.Tensor],
    expected: list[tuple[int, ...]],
    family: str,
) -> None:
    """Refuse an adapter whose features do not fit the UNet's blocks, in one sentence."""
    got = [tuple(f.shape[1:]) for f in features[: len(expected)]]
    if got == expected[: len(got)]:
        return
    made = "SDXL" if adapter.config.adapter_type == adapter_keys.FULL_XL else "SD 1.x and 2.x"
    raise EngineError(
        ErrorKind.BAD_INPUT,
        f"The T2I adapter {Path(name).name} does not fit {family} models (it looks made for "
        f"{made} models); choose an adapter made for the model's family.",
    )


# ----------------------------------------------------------------------------- injection


@dataclass(frozen=True)
class AdapterFeatures:
    """One unit's features, already multiplied by its weight, and its part of the steps."""

    features: tuple[torch.Tensor, ...]
    start: float
    end: float

    def acts_at(self, i: int, steps: int) -> bool:
        # diffusers' ControlNet rule (control_guidance_start/end); with start 0 it is the
        # SDXL adapter pipeline's `i < int(steps * adapter_conditioning_factor)`.
        return not (i / steps < self.start or (i + 1) / steps > self.end)


def unit_features(
    adapter: T2IAdapter, unit: ControlUnit, control_map: Image.Image
) -> AdapterFeatures:
    grid = int(adapter.downscale_factor)  # the adapter reads the picture in grid x grid patches
    width, height = control_map.size
    if width % grid or height % grid:
        tries = f"{max(grid, width - width % grid)}x{max(grid, height - height % grid)}"
        raise EngineError(
            ErrorKind.BAD_INPUT,
            f"The T2I adapter {Path(unit.model).name} needs the width and height in multiples "
            f"of {grid}, got {width}x{height} (try {tries}).",
        )
    with torch.inference_mode():
        features = adapter(adapter_input(control_map, adapter))
        weight = float(unit.weight)
        return AdapterFeatures(
            tuple(f * weight for f in features), float(unit.start), float(unit.end)
        )


class AdapterInjection:
    """Adds the active units' features to each UNet call as the adapters' residuals.

    The step a call belongs to comes from the pipeline's step-end callback (advance());
    `steps` is the number of steps the pipeline runs."""

    def __init__(self, units: Sequence[AdapterFeatures], steps: int) -> None:
        self.units = [u for u in units if any(bool(f.any()) for f in u.features)]
        self.steps = max(1, steps)
        self.step = 0  # index of the step the next UNet call serves

    def advance(self, i: int) -> None:
        """Called at the end of step i (0-based) of the pipeline's loop."""
        self.step = i + 1

    def residuals(self, batch: int) -> list[torch.Tensor] | None:
        active = [u for u in self.units if u.acts_at(self.step, self.steps)]
        if not active:
            return None
        total = list(active[0].features)
        for unit in active[1:]:
            total = [a + b for a, b in zip(total, unit.features, strict=False)]
        # One control map serves every image and both guidance halves (the pipelines
        # repeat it); expand() shares the memory.
        return [f.expand(batch, *f.shape[1:]) for f in total]

    def _before_unet(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        sample = args[0] if args else kwargs["sample"]
        residuals = self.residuals(sample.shape[0])
        if residuals is None:
            return None
        return args, {**kwargs, "down_intrablock_additional_residuals": residuals}

    @contextlib.contextmanager
    def attached(self, unet: torch.nn.Module | None) -> Iterator[AdapterInjection]:
        if unet is None or not self.units:
            yield self
            return
        handle = unet.register_forward_pre_hook(self._before_unet, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()


def injection(
    units: Sequence[tuple[ControlUnit, Image.Image, T2IAdapter]],
    model: LoadedModel,
    size: tuple[int, int],
    steps: int,
) -> AdapterInjection:
    """The job's adapter units (unit, control map, adapter) as one UNet injection, each
    checked against the UNet's blocks; steps: how many steps the pipeline runs."""
    found = []
    if units:
        pipe: Any = model.pipe  # a UNet family's pipeline (the plan checked the family)
        expected = expected_shapes(pipe.unet, *size, pipe.vae_scale_factor)
        for unit, control_map, adapter in units:
            features = unit_features(adapter, unit, control_map)
            check_fits(unit.model, adapter, list(features.features), expected, model.label)
            found.append(features)
    return AdapterInjection(found, steps)
