"""Int8 compute for the OpenVINO UNet: nncf's post-training quantization, calibrated on
UNet inputs from the engine's own first run at a size, kept only where its outputs stay
close to the bfloat16 graph's.

What is quantized: the convolutions, activations included, with ranges measured on the
calibration inputs; the convolutions are where the CPU's int8 dot products (VNNI) beat
bfloat16. What stays bfloat16, because int8 lost the picture there (measured per group
of layers on SD 1.5's architecture at 512 px, UNet outputs against float32's: every
convolution int8 0.988; these kept bfloat16 0.9994, the bfloat16 graph 0.9997; their
activation ranges were what int8 could not hold): conv_in (the latent itself) and
conv_out, the first down block and the last up block (the full-resolution level), the
residual shortcuts (their inputs carry the skip connections' wide range), attention,
and the matrix products' activations (their weights are int8, decompressed on the fly).

How a size gets its int8 UNet: the first job at that size runs the bfloat16 graph and
keeps its UNet inputs (<ov folder>/int8-2/calibration-WxH.npz), an even spread for
calibration and a few held-out calls for the check; the next job at that size quantizes
once (a loading stage) into <ov folder>/int8-2/unet-WxH.xml, compares the int8 graph's
outputs with the bfloat16 graph's on the held-out calls and writes the result beside it
(unet-WxH.json). "auto" runs int8 only where that correlation is above QUALITY_BAR;
"openvino-int8" runs it regardless. A quantization that fails leaves a note beside it and
the bfloat16 graph runs. nncf is part of the openvino extra; this module imports it only
when it quantizes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_SAMPLES = 12  # UNet calls kept for calibration, spread over the run
VALIDATION_SAMPLES = 3  # held-out calls the int8 graph is checked on
MIN_SAMPLES = 2
QUALITY_BAR = 0.999  # correlation of int8 UNet outputs with bfloat16's that "auto" needs
# Convolutions int8 loses the picture at (see the module's docstring), by node name in
# the graph openvino's converter writes (the torch module's path); {last} is the index of
# the last up block (3 in SD 1.x/2.x, 2 in SDXL).
KEEP_BFLOAT16 = (
    r"__module\.unet\.conv_(in|out)/",
    r"__module\.unet\.down_blocks\.0\.",
    r"__module\.unet\.up_blocks\.{last}\.",
    r"conv_shortcut/",
)
CALIBRATING = (
    "int8: this first job at {size} ran in bfloat16 and kept its UNet inputs; the next "
    "job at this size quantizes the UNet to int8 with them (once; it takes minutes), "
    "checks it against bfloat16 and runs it (auto: only where it keeps the picture)."
)
FAILED = "int8 quantization failed here ({why}); the bfloat16 OpenVINO graph ran."
KEPT_OUT = (
    "int8 was checked and left out at {size}: its UNet outputs correlated {correlation:.5f} "
    "with the bfloat16 graph's (the bar is {bar}), so the bfloat16 OpenVINO graph runs at "
    "this size (--backend openvino-int8 runs int8 anyway)."
)
BELOW_BAR = (
    "int8 at {size}: its UNet outputs correlated {correlation:.5f} with the bfloat16 "
    "graph's, below the {bar} bar that auto uses; it runs because openvino-int8 was chosen."
)


def available() -> bool:
    """True when nncf can be imported (pip install 'diffusiondesk[openvino]')."""
    return importlib.util.find_spec("nncf") is not None


def _folder(ov_folder: Path) -> Path:
    return ov_folder / "int8-2"  # 2: held-out calls and the check; earlier files are not read


def size_name(width: int, height: int) -> str:
    return f"{width}x{height}"


def unet_xml(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"unet-{size}.xml"


def calibration_file(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"calibration-{size}.npz"


def failure_note(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"unet-{size}.failed"


def quality_file(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"unet-{size}.json"


def read_quality(ov_folder: Path, size: str) -> float | None:
    """The int8 graph's checked correlation with bfloat16 at this size, None unchecked."""
    try:
        data = json.loads(quality_file(ov_folder, size).read_text())
        return float(data["correlation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
        """Write an even spread of the kept calls for calibration and a few others held
        out for the check (atomically); False with too few."""
        if len(self.samples) < MIN_SAMPLES:
            return False
        count = len(self.samples)
        held = min(VALIDATION_SAMPLES, max(0, count - MIN_SAMPLES), count // 4)
        wanted = min(CALIBRATION_SAMPLES, count - held)
        picks = sorted({int(round(p)) for p in np.linspace(0, count - 1, wanted)})
        rest = [i for i in range(count) if i not in picks]
        if held and rest:
            spread = np.linspace(0, len(rest) - 1, min(held, len(rest)))
            held_out = sorted({rest[int(round(p))] for p in spread})
        else:
            held_out = []
        arrays = {
            f"{prefix}{i}__{name}": value
            for prefix, indices in (("", picks), ("v", held_out))
            for i, index in enumerate(indices)
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


def load_calibration(path: Path, held_out: bool = False) -> list[dict[str, np.ndarray]]:
    """The samples a Recorder saved for calibration (held_out: those kept for the check);
    allow_pickle off: numbers only."""
    samples: dict[int, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            index, _, name = key.partition("__")
            if index.startswith("v") != held_out:
                continue
            samples.setdefault(int(index.removeprefix("v")), {})[name] = data[key]
    return [samples[i] for i in sorted(samples)]


def kept_bfloat16(model: Any) -> list[str]:
    """The names of the convolutions that stay bfloat16 (KEEP_BFLOAT16) in this graph."""
    names = [op.get_friendly_name() for op in model.get_ops()]
    ups = [int(m.group(1)) for n in names if (m := re.search(r"\.up_blocks\.(\d+)\.", n))]
    last = str(max(ups)) if ups else "none"
    patterns = [re.compile(p.replace("{last}", last)) for p in KEEP_BFLOAT16]
    return [
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() == "Convolution"
        and any(p.search(op.get_friendly_name()) for p in patterns)
    ]


def quantize_model(model: Any, samples: list[dict[str, np.ndarray]]) -> Any:
    """nncf's quantization of an OpenVINO UNet (see the module's docstring)."""
    import nncf  # type: ignore[import-untyped]

    # The matrix products' weights int8 first (weight-only: their activations stay
    # bfloat16); without it quantizing SD 1.5 at 512 px took over 12 GB and was killed.
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
        ignored_scope=nncf.IgnoredScope(
            names=kept_bfloat16(model),
            types=["MatMul", "ScaledDotProductAttention"],
            validate=False,
        ),
    )


def correlation(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    x = np.concatenate([v.reshape(-1) for v in a]).astype(np.float64)
    y = np.concatenate([v.reshape(-1) for v in b]).astype(np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def check(int8_part: Any, bfloat16_part: Any, ov_folder: Path, size: str) -> float | None:
    """Compare the int8 graph with the bfloat16 one on the held-out calls and write the
    correlation beside the int8 file; None where none were held out."""
    samples = load_calibration(calibration_file(ov_folder, size), held_out=True)
    if not samples:
        return None
    value = correlation([int8_part(s) for s in samples], [bfloat16_part(s) for s in samples])
    target = quality_file(ov_folder, size)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps({"correlation": round(value, 6), "samples": len(samples)}))
        os.replace(tmp, target)
    return value


def remove_unet(xml: Path) -> None:
    """Delete an int8 graph (its .bin first: the .xml marks the pair ready)."""
    for path in (xml.with_suffix(".bin"), xml):
        with contextlib.suppress(OSError):
            path.unlink()


def quantize_unet(ov_folder: Path, size: str) -> Path:
    """Quantize <ov_folder>/unet.xml with the size's calibration inputs into its int8
    file (written in a temporary folder and moved into place: never half-written)."""
    import openvino as ov  # type: ignore[import-untyped]

    target = unet_xml(ov_folder, size)
    samples = load_calibration(calibration_file(ov_folder, size))
    model = ov.Core().read_model(str(ov_folder / "unet.xml"))
    save_atomically(quantize_model(model, samples), target)
    return target


def save_atomically(model: Any, target: Path) -> None:
    """Write an OpenVINO model as <target>.xml/.bin, in a temporary folder moved into
    place: never half-written."""
    import openvino as ov  # type: ignore[import-untyped]

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=target.stem + ".part-", dir=target.parent))
    try:
        ov.save_model(model, str(work / target.name), compress_to_fp16=False)
        os.replace(work / target.with_suffix(".bin").name, target.with_suffix(".bin"))
        os.replace(work / target.name, target)  # the .xml last: it marks the pair ready
    finally:
        shutil.rmtree(work, ignore_errors=True)
