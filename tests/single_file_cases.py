"""Every transformer-only family as the single files people download, in one table.

Each case writes its tiny model as a transformer file plus separate text-encoder and VAE
files (the family's tests/tiny_*_files.py writer) and says how to draw the fixed picture
two loads of one model are compared by. Tests that hold for every family parametrize
over CASES instead of repeating themselves per family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from model_helpers import Recorder, never

from engine.api import EngineError, ErrorKind, ModelFamily
from engine.models import ModelManager
from tests.tiny_flow_files import FlowFiles


def picture_of(pipe: Any, size: int = 32, **extra: object) -> np.ndarray:
    """The pipeline's picture (floats) for one fixed prompt, seed and two steps."""
    generator = torch.Generator().manual_seed(7)
    settings = {"num_inference_steps": 2, "height": size, "width": size, "output_type": "np"}
    return pipe(prompt="a red circle", generator=generator, **settings, **extra).images[0]


def assert_same_pixels(a: np.ndarray, b: np.ndarray) -> None:
    """The same picture: floats within float32 noise, the saved 8-bit pixels identical."""
    np.testing.assert_allclose(a, b, atol=1e-5)
    as_bytes = [(x * 255).round().astype(np.uint8) for x in (a, b)]
    np.testing.assert_array_equal(*as_bytes)


def cpu_manager(config_root: Path, dtype: str = "float32", **kwargs: Any) -> ModelManager:
    """A CPU model manager reading the tiny models' configs from config_root."""
    return ModelManager(device="cpu", dtype=dtype, config_root=config_root, **kwargs)


def load_error(
    manager: ModelManager, path: Path, kind: ErrorKind = ErrorKind.MODEL, **options: Any
) -> str:
    """The message of the error (of `kind`) that loading `path` ends in."""
    with pytest.raises(EngineError) as caught:
        manager.get(str(path), Recorder(), never, **options)
    assert caught.value.kind == kind, caught.value
    return caught.value.message


def _write(family: str, **options: object) -> Callable[..., tuple[FlowFiles, Any]]:
    """The family's writer with these options (and any given when it is called)."""

    def write(tmp: Path, **more: object) -> tuple[FlowFiles, Any]:
        given: dict[str, Any] = {**options, **more}
        if family in ("flux1", "sd3"):
            from tests.tiny_flow_files import write_flow_files

            return write_flow_files(tmp, family, **given)
        if family == "zimage":
            from tests.tiny_flow_files import write_zimage_files

            return write_zimage_files(tmp)
        if family == "qwen_image":
            from tests.tiny_qwen_files import write_qwen_files

            return write_qwen_files(tmp, **given)
        if family == "sana":
            from tests.tiny_sana_files import write_sana_files

            return write_sana_files(tmp, **given)
        from tests.tiny_klein_files import write_klein_files

        return write_klein_files(tmp, **given)

    return write


@dataclass(frozen=True)
class SingleFileCase:
    """One family's tiny model as single files, and the picture it is compared by."""

    family: ModelFamily
    variant: str  # the family profile's variant name the files should load as
    write: Callable[..., tuple[FlowFiles, Any]]  # (tmp folder, **writer options)
    size: int = 32
    call: dict[str, object] = field(default_factory=dict)  # the family's own pipeline arguments

    def picture(self, pipe: Any) -> np.ndarray:
        return picture_of(pipe, self.size, **self.call)


CASES: dict[str, SingleFileCase] = {
    "flux1-dev": SingleFileCase(ModelFamily.FLUX1, "dev", _write("flux1")),
    "flux1-schnell": SingleFileCase(
        ModelFamily.FLUX1, "schnell", _write("flux1", variant="flux1-schnell")
    ),
    "sd3": SingleFileCase(ModelFamily.SD3, "", _write("sd3")),
    "zimage": SingleFileCase(
        ModelFamily.ZIMAGE, "turbo", _write("zimage"), call={"guidance_scale": 0.0}
    ),
    "qwen_image": SingleFileCase(
        ModelFamily.QWEN_IMAGE,
        "",
        _write("qwen_image"),
        call={"negative_prompt": " ", "true_cfg_scale": 4.0},
    ),
    "sana": SingleFileCase(
        ModelFamily.SANA, "", _write("sana"), size=64, call={"use_resolution_binning": False}
    ),
    "sana-sprint": SingleFileCase(
        ModelFamily.SANA,
        "sprint",
        _write("sana", sprint=True),
        size=64,
        call={"use_resolution_binning": False},
    ),
    "flux2-klein": SingleFileCase(ModelFamily.FLUX2, "distilled", _write("flux2")),
    "flux2-klein-base": SingleFileCase(
        ModelFamily.FLUX2, "base", _write("flux2", distilled=False), call={"guidance_scale": 4.0}
    ),
}
