"""Int8 compute for the OpenVINO UNet: nncf's post-training quantization, calibrated on
UNet inputs from the engine's own first run at a size, kept only where its outputs stay
close to the bfloat16 graph's.

What is quantized: the convolutions and the feed-forward's first matrix product
(INT8_MATMULS), activations included, with ranges measured on the calibration inputs;
that is where the CPU's int8 dot products (VNNI) beat bfloat16. What stays bfloat16,
because int8 lost the picture there (measured per group of layers on SD 1.5's
architecture at 512 px, UNet outputs against float32's: every convolution int8 0.988;
these kept bfloat16 0.9994, the bfloat16 graph 0.9997; their activation ranges were
what int8 could not hold): conv_in (the latent itself) and conv_out, the first down
block and the last up block (the full-resolution level: int8 there took the correlation
with float32 to 0.9986 for 2-6% of speed; bench/int8_variants.py), the residual
shortcuts (their inputs carry the skip
connections' wide range), attention, and the other matrix products' activations (their
weights are int8, decompressed on the fly).

How a size gets its int8 UNet: the first job at that size runs the bfloat16 graph and
keeps its UNet inputs (<ov folder>/int8-2/calibration-WxH.npz), an even spread for
calibration and a few held-out calls for the check; the next job at that size quantizes
once (a loading stage, in a process of its own: quantize_unet_apart) into
<ov folder>/int8-2/unet-WxH-rN.xml (N: RECIPE), compares the int8 graph's outputs with
the bfloat16 graph's on the held-out calls and writes the result beside it
(unet-WxH-rN.json). "auto" runs int8 only where that correlation is above QUALITY_BAR;
"openvino-int8" runs it regardless. A quantization that fails leaves a note beside it and
the bfloat16 graph runs; too little free memory defers it to a later job. nncf is part
of the openvino extra; this module imports it only when it quantizes.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.api import JobCancelled

CALIBRATION_SAMPLES = 12  # UNet calls kept for calibration, spread over the run
VALIDATION_SAMPLES = 3  # held-out calls the int8 graph is checked on
MIN_SAMPLES = 2
RECIPE = 3  # what quantize_model does; part of the int8 files' names
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
# Matrix products that run int8 with their activations: the feed-forward's first
# projection (GEGLU, 4/9 of a transformer block's matrix work). The other products keep
# int8 weights only: their activations in int8 gained nothing measurable (attention's
# value/output projections, the feed-forward's second one) or cost UNet correlation with
# float32 below 0.999 (all of them: 0.9989, SD 1.5 at 512 px on bench/cpu_speed.py's input).
INT8_MATMULS = r"\.ff\.net\.0\.proj/"
CALIBRATING = (
    "int8: this first job at {size} ran in bfloat16 and kept its UNet inputs; the next "
    "job at this size quantizes the UNet to int8 with them (once; it takes minutes), "
    "checks it against bfloat16 and runs it (auto: only where it keeps the picture)."
)
FAILED = "int8 quantization failed here ({why}); the bfloat16 OpenVINO graph ran."
# Peak memory of the quantizing process per byte of the UNet's weights file: nncf holds
# the graph several times over while it collects statistics (SD 1.5 at 512 px, a 1.72 GB
# unet.bin: 12.1 GB peak RSS, see one_picture_each), with a margin.
MEMORY_PER_WEIGHT_BYTE = 7.5
NOT_ENOUGH_MEMORY = (
    "int8 at {size} waits for memory: quantizing this UNet once takes about {need:.0f} GB "
    "and {free:.1f} GB is free now, so the bfloat16 OpenVINO graph ran; a later job at this "
    "size tries again (close other programs, or choose --backend openvino to stop trying)."
)
KILLED = "the quantizing process was stopped by signal {signal} (out of memory?)"
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


def _stem(size: str) -> str:
    return f"unet-{size}-r{RECIPE}"  # files of an earlier recipe are not read


def unet_xml(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"{_stem(size)}.xml"


def remove_earlier_recipes(ov_folder: Path, size: str) -> None:
    """Delete the int8 files an earlier recipe left at this size (a gigabyte each)."""
    current, earlier = _stem(size), re.compile(rf"unet-{re.escape(size)}(-r\d+)?")
    for path in _folder(ov_folder).glob(f"unet-{size}*"):
        stem = path.name.split(".")[0]
        if earlier.fullmatch(stem) and stem != current:
            with contextlib.suppress(OSError):
                path.unlink()


def calibration_file(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"calibration-{size}.npz"


def failure_note(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"{_stem(size)}.failed"


def quality_file(ov_folder: Path, size: str) -> Path:
    return _folder(ov_folder) / f"{_stem(size)}.json"


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


def one_picture_each(samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The calls split into batch-1 calls: nncf quantizing SD 1.5 at 512 px peaked at
    18.8 GB with guided (batch 2) calls and at 12.1 GB with their halves."""
    return [
        {name: value[i : i + 1] for name, value in sample.items()}
        for sample in samples
        for i in range(len(next(iter(sample.values()))))
    ]


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


def int8_matmuls(model: Any) -> list[str]:
    """The matrix products that run int8 with their activations (INT8_MATMULS)."""
    pattern = re.compile(INT8_MATMULS)
    return [
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() == "MatMul" and pattern.search(op.get_friendly_name())
    ]


def quantize_model(
    model: Any,
    samples: list[dict[str, np.ndarray]],
    kept: list[str] | None = None,
    with_activations: list[str] | None = None,
) -> Any:
    """nncf's quantization of an OpenVINO UNet (see the module's docstring): the
    convolutions not in kept (default kept_bfloat16) and the matrix products in
    with_activations (default int8_matmuls) int8 with their activations, the other
    matrix products' weights int8. bench/int8_variants.py passes other choices."""
    import nncf  # type: ignore[import-untyped]

    kept = kept_bfloat16(model) if kept is None else kept
    active = int8_matmuls(model) if with_activations is None else with_activations
    matmuls = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "MatMul"]
    # The other matrix products' weights int8 first (weight-only: their activations stay
    # bfloat16); quantizing them all with activations took 16.5 GB at 512 px and lost
    # more than it gained (see INT8_MATMULS).
    compressed = nncf.compress_weights(
        model,
        mode=nncf.CompressWeightsMode.INT8_ASYM,
        ignored_scope=nncf.IgnoredScope(types=["Convolution"], names=active, validate=False),
    )
    # SmoothQuant off: the recipe as measured (it gained nothing in earlier trials).
    smooth_quant = nncf.quantization.advanced_parameters.AdvancedSmoothQuantParameters
    return nncf.quantize(
        compressed,
        nncf.Dataset(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=smooth_quant(matmul=-1)
        ),
        ignored_scope=nncf.IgnoredScope(
            names=kept + [n for n in matmuls if n not in active],
            types=["ScaledDotProductAttention"],
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
    remove_earlier_recipes(ov_folder, size)
    samples = one_picture_each(load_calibration(calibration_file(ov_folder, size)))
    model = ov.Core().read_model(str(ov_folder / "unet.xml"))
    save_atomically(quantize_model(model, samples), target)
    return target


def memory_needed(ov_folder: Path) -> int:
    """Bytes the quantizing process is expected to need at its peak."""
    weights = ov_folder / "unet.bin"
    return int(MEMORY_PER_WEIGHT_BYTE * weights.stat().st_size) if weights.is_file() else 0


def free_memory() -> int:
    """Bytes the system can give a new process now (psutil's "available")."""
    import psutil

    return int(psutil.virtual_memory().available)


class NotEnoughMemory(RuntimeError):
    """Too little free memory to quantize now; nothing was written, a later job retries."""


class QuantizeFailed(RuntimeError):
    """The quantizing process failed; the message is its own account of why."""


_children: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _stop_children() -> None:  # an application closed mid-quantization leaves none behind
    for child in list(_children):
        with contextlib.suppress(OSError):
            child.kill()


def _command(ov_folder: Path, size: str) -> list[str]:
    return [sys.executable, "-m", "engine.backends.int8", str(ov_folder), size]


def quantize_unet_apart(
    ov_folder: Path, size: str, should_cancel: Callable[[], bool], poll: float = 0.25
) -> Path:
    """quantize_unet in a process of its own: nncf's peak memory (see
    MEMORY_PER_WEIGHT_BYTE) is given back to the system when it ends, running out of
    memory kills that process rather than the application, and a cancelled job stops it
    at once. Raises NotEnoughMemory before starting where too little is free, JobCancelled
    when cancelled, QuantizeFailed with the child's last words when it fails."""
    need, free = memory_needed(ov_folder), free_memory()
    if need > free:
        raise NotEnoughMemory(NOT_ENOUGH_MEMORY.format(size=size, need=need / 1e9, free=free / 1e9))
    if getattr(sys, "frozen", False):  # a bundled executable cannot run -m: stay in-process
        return quantize_unet(ov_folder, size)
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            _command(ov_folder, size),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # nncf's progress; a failure's reason is on stderr
            stderr=log,
            env=env,
        )
        _children.add(child)
        try:
            while child.poll() is None:
                if should_cancel():
                    child.kill()
                    child.wait()
                    raise JobCancelled()
                time.sleep(poll)
        finally:
            _children.discard(child)
        if child.returncode == 0 and is_ready(unet_xml(ov_folder, size)):
            return unet_xml(ov_folder, size)
        if child.returncode < 0:
            raise QuantizeFailed(KILLED.format(signal=-child.returncode))
        log.seek(0)
        lines = [ln.strip() for ln in log.read().decode(errors="replace").splitlines()]
        last = next((ln for ln in reversed(lines) if ln), f"exit status {child.returncode}")
        raise QuantizeFailed(last[:300])


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


def _main(argv: list[str]) -> int:
    """python -m engine.backends.int8 <ov folder> <WxH>: quantize_unet, for
    quantize_unet_apart. A failure's last line on stderr says why."""
    if len(argv) != 2:
        print("usage: python -m engine.backends.int8 <openvino folder> <WxH>", file=sys.stderr)
        return 2
    try:
        quantize_unet(Path(argv[0]), argv[1])
    except Exception as exc:  # the parent reads the last line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"{type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
