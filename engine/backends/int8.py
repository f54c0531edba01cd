"""Int8 compute for the OpenVINO UNet (the opt-in backend "openvino-int8"): nncf's
post-training quantization, calibrated on UNet inputs from the engine's own first run at
a size.

The mode is nncf's "hybrid" one for diffusion models (what optimum-intel does): every
weight of the matrix products int8 (weight-only: decompressed on the fly), and the
convolutions quantized in full, activations included, with ranges measured on the
calibration inputs; the convolutions are where the CPU's int8 dot products (VNNI) beat
bfloat16.

How a size gets its int8 UNet: the first job at that size runs the bfloat16 graph and
keeps its UNet inputs (<ov folder>/int8/calibration-WxH.npz); the next job at that size
quantizes once (a loading stage) into <ov folder>/int8/unet-WxH.xml and runs it from
then on. A quantization that fails leaves a note beside it and the bfloat16 graph runs.
nncf is part of the openvino extra; this module imports it only when it quantizes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_SAMPLES = 12  # UNet calls kept for calibration, spread over the run
MIN_SAMPLES = 2
CALIBRATING = (
    "int8: this first job at {size} ran in bfloat16 and kept its UNet inputs; the next "
    "job at this size quantizes the UNet to int8 with them (once) and runs it."
)
FAILED = "int8 quantization failed here ({why}); the bfloat16 OpenVINO graph ran."


def available() -> bool:
    """True when nncf can be imported (pip install 'diffusiondesk[openvino]')."""
    return importlib.util.find_spec("nncf") is not None


def _folder(ov_folder: Path) -> Path:
    return ov_folder / "int8"


def size_name(width: int, height: int) -> str:
    return f"{width}x{height}"


def unet_xml(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"unet-{size}.xml"


def calibration_file(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"calibration-{size}.npz"


def failure_note(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"unet-{size}.failed"


def is_ready(xml: Path) -> bool:
    return xml.is_file() and xml.with_suffix(".bin").is_file()


class Recorder:
    """Keeps the UNet inputs of one job (one batch shape: the guided one)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[dict[str, np.ndarray]] = []

    def add(self, inputs: dict[str, np.ndarray]) -> None:
        first = self.samples[0] if self.samples else None
        if first is None or all(first[k].shape == v.shape for k, v in inputs.items()):
            self.samples.append({k: v.copy() for k, v in inputs.items()})

    def save(self) -> bool:
        """Write an even spread of the kept calls (atomically); False with too few."""
        if len(self.samples) < MIN_SAMPLES:
            return False
        picks = np.linspace(0, len(self.samples) - 1, min(CALIBRATION_SAMPLES, len(self.samples)))
        arrays = {
            f"{i}__{name}": value
            for i, index in enumerate(sorted({int(round(p)) for p in picks}))
            for name, value in self.samples[index].items()
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.npz")
        save: Any = np.savez  # its stubs read ** as its allow_pickle keyword
        with contextlib.suppress(OSError):
            save(tmp, **arrays)
            os.replace(tmp, self.path)
            return True
        tmp.unlink(missing_ok=True)
        return False


def load_calibration(path: Path) -> list[dict[str, np.ndarray]]:
    """The samples a Recorder saved (allow_pickle off: numbers only)."""
    samples: dict[int, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            index, _, name = key.partition("__")
            samples.setdefault(int(index), {})[name] = data[key]
    return [samples[i] for i in sorted(samples)]


def quantize_model(model: Any, samples: list[dict[str, np.ndarray]]) -> Any:
    """nncf's hybrid quantization of an OpenVINO model (see the module's docstring)."""
    import nncf  # type: ignore[import-untyped]
    from nncf.quantization.advanced_parameters import (  # type: ignore[import-untyped]
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    compressed = nncf.compress_weights(
        model,
        mode=nncf.CompressWeightsMode.INT8_ASYM,
        ignored_scope=nncf.IgnoredScope(types=["Convolution"], validate=False),
    )
    return nncf.quantize(
        compressed,
        nncf.Dataset(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
        # The matrix products keep their int8 weights and bfloat16 activations.
        ignored_scope=nncf.IgnoredScope(types=["MatMul"], validate=False),
        advanced_parameters=AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)
        ),
    )


def quantize_unet(ov_folder: Path, size: str) -> Path:
    """Quantize <ov_folder>/unet.xml with the size's calibration inputs into its int8
    file (written in a temporary folder and moved into place: never half-written)."""
    import openvino as ov  # type: ignore[import-untyped]

    target = unet_xml(ov_folder, size)
    samples = load_calibration(calibration_file(ov_folder, size))
    model = ov.Core().read_model(str(ov_folder / "unet.xml"))
    quantized = quantize_model(model, samples)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=target.stem + ".part-", dir=target.parent))
    try:
        ov.save_model(quantized, str(work / target.name), compress_to_fp16=False)
        os.replace(work / target.with_suffix(".bin").name, target.with_suffix(".bin"))
        os.replace(work / target.name, target)  # the .xml last: it marks the pair ready
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
