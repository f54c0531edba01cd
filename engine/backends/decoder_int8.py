"""Int8 compute for the OpenVINO VAE decoder: nncf's post-training quantization of its
convolutions, calibrated on the latents the engine itself decoded.

The decode of a 512 px picture is about 2.5 TFLOP, nearly all of it 3x3 convolutions at
full resolution; on a CPU with VNNI (AVX512-VNNI, AVX-VNNI) an int8 convolution does
twice the work of a bfloat16 one per instruction. nncf places quantizers on the
convolutions' inputs and weights (per channel); GroupNorm, SiLU, the residual additions,
the mid-block attention (a few percent of the work) and the convolutions at the two ends
(see KEPT) stay in bfloat16.

How a model gets its int8 decoder: a job that decodes with the bfloat16 graph keeps its
final latents (<ov folder>/int8/decoder-calibration.npz); the next job quantizes once
into <ov folder>/int8/vae_decoder.xml and decodes with it from then on, at every size
(the quantized graph keeps the decoder's dynamic shape: one file serves all sizes). A
quantization that fails leaves a note beside it and the bfloat16 decoder runs.
nncf is part of the openvino extra; this module imports it only when it quantizes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.api import JobCancelled
from engine.backends import int8

# Calibration runs the float32 graph: tiles of at most this many latent pixels a side
# (256 px of picture) keep it to seconds; a convolution's activation range does not
# depend on the picture's size.
TILE = 32
MAX_LATENTS = 4  # decodes kept for calibration (most jobs decode one picture)
# Convolutions left in bfloat16 (node names from openvino's converter): the first two
# take the latents themselves, whose fine steps an 8-bit range loses, and the last makes
# the pixels; together well under 1% of the work, +0.5 dB PSNR on the bench's decoder.
KEPT = [r".*post_quant_conv/.*", r".*decoder\.conv_in/.*", r".*decoder\.conv_out/.*"]
CALIBRATING = (
    "int8 decode: this job decoded in bfloat16 and kept its latents; the next job "
    "quantizes the VAE decoder to int8 with them (once per model) and decodes with it."
)
FAILED = "int8 decoder quantization failed here ({why}); the bfloat16 decoder ran."


def folder(ov_folder: Path) -> Path:
    return ov_folder / "int8"


def decoder_xml(ov_folder: Path) -> Path:
    return folder(ov_folder) / "vae_decoder.xml"


def calibration_file(ov_folder: Path) -> Path:
    return folder(ov_folder) / "decoder-calibration.npz"


def failure_note(ov_folder: Path) -> Path:
    return folder(ov_folder) / "vae_decoder.failed"


def is_ready(xml: Path) -> bool:
    return xml.is_file() and xml.with_suffix(".bin").is_file()


class LatentRecorder:
    """Keeps the latents of one job's final decodes (as the decoder graph takes them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.latents: list[np.ndarray] = []

    def add(self, z: np.ndarray) -> None:
        for one in z:  # a batch decodes as one call: keep each picture's latents
            if len(self.latents) < MAX_LATENTS and np.isfinite(one).all():
                self.latents.append(one[None].astype(np.float32, copy=True))

    def save(self) -> bool:
        """Write the kept latents (atomically); False when none were kept."""
        if not self.latents:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.npz")
        save: Any = np.savez  # its stubs read ** as its allow_pickle keyword
        with contextlib.suppress(OSError):
            save(tmp, **{f"z{i}": z for i, z in enumerate(self.latents)})
            os.replace(tmp, self.path)
            return True
        tmp.unlink(missing_ok=True)
        return False


def load_latents(path: Path) -> list[np.ndarray]:
    """The latents a LatentRecorder saved (allow_pickle off: numbers only)."""
    with np.load(path, allow_pickle=False) as data:
        return [data[key] for key in sorted(data.files, key=lambda k: int(k[1:]))]


def calibration_samples(latents: list[np.ndarray], tile: int = TILE) -> list[dict[str, Any]]:
    """The decoder inputs nncf measures ranges on: each kept latent cut into tiles of at
    most `tile` a side (a 64x64 latent gives its four quarters), all of one shape."""
    sides = [min(tile, z.shape[-2], z.shape[-1]) for z in latents]
    side = min(sides) if sides else tile
    samples = []
    for z in latents:
        height, width = z.shape[-2:]
        for top in range(0, height - side + 1, side):
            for left in range(0, width - side + 1, side):
                part = np.ascontiguousarray(z[..., top : top + side, left : left + side])
                samples.append({"z": part})
    return samples


def quantize_model(model: Any, samples: list[dict[str, Any]]) -> Any:
    """nncf's quantization of the decoder graph (see the module's docstring)."""
    import nncf  # type: ignore[import-untyped]

    return nncf.quantize(
        model,
        nncf.Dataset(samples),
        subset_size=len(samples),
        # Asymmetric activations: SiLU's outputs are mostly positive.
        preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(types=["MatMul"], patterns=KEPT, validate=False),
    )


def quantize_decoder(ov_folder: Path) -> Path:
    """Quantize <ov_folder>/vae_decoder.xml with the kept latents into the int8 file
    (written in a temporary folder and moved into place: never half-written)."""
    import openvino as ov  # type: ignore[import-untyped]

    target = decoder_xml(ov_folder)
    samples = calibration_samples(load_latents(calibration_file(ov_folder)))
    if not samples:
        raise ValueError("no calibration latents were kept")
    model = ov.Core().read_model(str(ov_folder / "vae_decoder.xml"))
    name = model.inputs[0].get_any_name()
    model.reshape({name: list(samples[0]["z"].shape)})
    quantized = quantize_model(model, samples)
    quantized.reshape({name: [-1, samples[0]["z"].shape[1], -1, -1]})  # every size again
    int8.save_atomically(quantized, target)
    return target


def prepare(
    ov_model: Any,
    height: int,
    width: int,
    progress: Callable[[str, float], None],
    should_cancel: Callable[[], bool],
) -> list[str]:
    """Set up ov_model's decoder for a job that decodes in int8: the int8 graph where it
    exists (quantized now if latents were kept before), else the bfloat16 graph with a
    recorder for this job's latents. Returns the job's warnings."""
    ov_model.decoder_serving = ov_model.decoder_recorder = None
    if ov_model.decoder_part is None:
        return []
    ov_folder = ov_model.folder
    xml, failed = decoder_xml(ov_folder), failure_note(ov_folder)
    if failed.is_file():
        return [FAILED.format(why=failed.read_text(errors="replace")[:200])]
    if not is_ready(xml) and calibration_file(ov_folder).is_file():
        progress("quantizing the VAE decoder to int8 (once per model)", 0.98)
        try:
            quantize_decoder(ov_folder)
        except (MemoryError, JobCancelled):
            raise
        except Exception as exc:  # an nncf failure: note it, decode in bfloat16
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            why = f"{type(exc).__name__}: {first}"
            with contextlib.suppress(OSError):
                failed.write_text(why)
            return [FAILED.format(why=why)]
        if should_cancel():
            raise JobCancelled()
    if is_ready(xml):
        part = ov_model.int8_decoder_part(xml)
        shapes = ov_model.decoder_shapes(1, height, width)
        if not part.is_compiled_for(shapes):
            progress(f"compiling the int8 VAE decoder for {width}x{height}", 0.99)
            part.compile_for(shapes)
        ov_model.decoder_serving = part
        return []
    ov_model.decoder_recorder = LatentRecorder(calibration_file(ov_folder))
    return [CALIBRATING]


def wanted(backend: str) -> bool:
    """Whether a job on this backend decodes in int8: with "openvino-int8" (see README's
    Troubleshooting for why not by default)."""
    return backend == "openvino-int8" and available()


def available() -> bool:
    """True when nncf can be imported (pip install 'diffusiondesk[openvino]')."""
    return importlib.util.find_spec("nncf") is not None
