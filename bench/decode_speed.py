"""How fast each final-decode path turns latents into a picture on this CPU, how close
it stays to float32, and the peak memory of each. Prints one JSON object.

    python bench/decode_speed.py [--size 512] [--repeats 3] [--no-rss] [--cache DIR]
                                 [--profile]

The VAE is SD 1.5's (engine/model_configs/sd1/vae) with random weights built here; only
the decoder is converted, so this takes minutes where bench/cpu_speed.py (UNet, pictures)
takes many. Paths, taking turns (median of --repeats decodes each):

- "plain": float32 torch, the baseline; "bf16": bfloat16 + channels_last torch (the
  default on CPUs with bfloat16 units without OpenVINO);
- "openvino": the OpenVINO decoder in bfloat16, compiled for the size (the default
  where OpenVINO is installed); "openvino_int8": the same quantized by nncf
  (engine/backends/decoder_int8.py), calibrated on one set of latents and measured on
  another;
- "tiny": the tiny autoencoder (TAESD's architecture, random weights) in bfloat16 +
  channels_last, the "fast decode" setting.

The latents are Gaussian with the spread of SD 1.5's final latents divided by its
scaling factor (what the pipeline hands the VAE). PSNR is of 8-bit pictures against
float32's (none for tiny: another network). --profile adds OpenVINO's time per node type
for both OpenVINO paths. Peak RSS: each path alone in a fresh process, one decode.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffusers import AutoencoderKL, AutoencoderTiny  # noqa: E402

from engine import devices  # noqa: E402
from engine.backends import decoder_int8, openvino_backend  # noqa: E402
from engine.resources import model_configs_dir  # noqa: E402

PATHS = ("plain", "bf16", "openvino", "openvino_int8", "tiny")
LATENT_STD = 1 / 0.18215  # SD 1.5's final latents have unit spread before unscaling


def vae(dtype: torch.dtype) -> AutoencoderKL:
    torch.manual_seed(0)
    config = json.loads((model_configs_dir() / "sd1" / "vae" / "config.json").read_text())
    model = AutoencoderKL.from_config(config).to(dtype).eval()
    if dtype == torch.bfloat16:
        policy = devices.DevicePolicy(torch.device("cpu"), dtype, channels_last=True)
        devices.apply_layout(policy, model)
    return model


def tiny() -> AutoencoderTiny:
    torch.manual_seed(0)
    model = AutoencoderTiny().to(torch.bfloat16).eval()
    return model.to(memory_format=torch.channels_last)


def latents(seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((1, 4, size // 8, size // 8)) * LATENT_STD).astype(np.float32)


def to_pixels(image: np.ndarray) -> np.ndarray:
    return np.round((np.clip(image, -1, 1) + 1) * 127.5)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((to_pixels(a) - to_pixels(b)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# ----------------------------------------------------------------------------- OpenVINO


def convert(model: AutoencoderKL, folder: Path) -> float:
    """The decoder graph into folder/vae_decoder.xml the way the engine converts it."""
    import openvino as ov  # type: ignore[import-untyped]

    if (folder / "vae_decoder.xml").is_file():
        return 0.0
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    graph = openvino_backend._DecoderGraph(model)
    z = torch.randn(1, model.config.latent_channels, 8, 8)
    converted = openvino_backend._convert(graph, ["z"], (z,))
    ov.save_model(converted, str(folder / "vae_decoder.xml"), compress_to_fp16=True)
    return time.perf_counter() - start


def compiled(xml: Path, size: int, profile: bool = False) -> Any:
    import openvino as ov  # type: ignore[import-untyped]

    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if devices.cpu_bf16_units() else "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        **({"PERF_COUNT": True} if profile else {}),
    }
    core = ov.Core()
    model = core.read_model(str(xml))
    model.reshape({"z": [1, 4, size // 8, size // 8]})
    return core.compile_model(model, "CPU", config)


def node_times(model: Any, z: np.ndarray) -> dict[str, float]:
    """Seconds per node type (and kernel) of one decode."""
    request = model.create_infer_request()
    request.infer({"z": z})
    totals: dict[str, float] = collections.defaultdict(float)
    for info in request.get_profiling_info():
        totals[f"{info.node_type} {info.exec_type}"] += info.real_time.total_seconds()
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:8]
    return {k: round(v, 3) for k, v in top if v > 0}


# ----------------------------------------------------------------------------- paths


def decoders(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A decode function per path (latents in VAE units -> image in [-1, 1], numpy), and
    the one-time figures of the OpenVINO paths."""
    fns: dict[str, Any] = {}
    once: dict[str, Any] = {}
    if "plain" in args.paths or "bf16" in args.paths:
        for name, dtype in (("plain", torch.float32), ("bf16", torch.bfloat16)):
            if name in args.paths:
                model = vae(dtype)
                fns[name] = lambda z, m=model: (
                    m.decode(torch.from_numpy(z).to(m.dtype)).sample.float().numpy()
                )
    if "tiny" in args.paths:
        small = tiny()
        # TAESD decodes the scaled latents (its scaling factor is 1).
        fns["tiny"] = lambda z: (
            small.decode(torch.from_numpy(z * 0.18215).to(torch.bfloat16)).sample.float().numpy()
        )
    if any(p.startswith("openvino") for p in args.paths):
        once["convert_s"] = round(convert(vae(torch.float32), folder), 1)
        if "openvino" in args.paths:
            seconds, model = timed(lambda: compiled(folder / "vae_decoder.xml", args.size))
            once["compile_s"] = round(seconds, 1)
            fns["openvino"] = lambda z, m=model: m({"z": z})[0]
        if "openvino_int8" in args.paths:
            kept = decoder_int8.LatentRecorder(decoder_int8.calibration_file(folder))
            kept.add(latents(1, args.size))
            kept.save()
            seconds, xml = timed(lambda: decoder_int8.quantize_decoder(folder))
            once["int8_quantize_s"] = round(seconds, 1)
            once["int8_calibration_tiles"] = len(decoder_int8.calibration_samples(kept.latents))
            seconds, model = timed(lambda: compiled(xml, args.size))
            once["int8_compile_s"] = round(seconds, 1)
            fns["openvino_int8"] = lambda z, m=model: m({"z": z})[0]
    return fns, once


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    fns, once = decoders(args, folder)
    z = latents(2, args.size)  # not the calibration latents
    images: dict[str, np.ndarray] = {}
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for name, fn in fns.items():  # warm-up, and the pictures to compare
            images[name] = fn(z)
        for r in range(args.repeats):
            order = list(fns) if r % 2 == 0 else list(reversed(fns))
            for name in order:
                times[name].append(timed(lambda fn=fns[name]: fn(z))[0])
    median = {k: statistics.median(v) for k, v in times.items()}
    report: dict[str, Any] = {
        "decode_s": {k: round(v, 3) for k, v in median.items()},
        "decode_best_s": {k: round(min(v), 3) for k, v in times.items()},
    }
    if "plain" in median:
        report["speedup_vs_float32"] = {k: round(median["plain"] / v, 2) for k, v in median.items()}
        report["psnr_vs_float32_db"] = {
            k: round(psnr(v, images["plain"]), 1)
            for k, v in images.items()
            if k not in ("plain", "tiny")
        }
    if "openvino" in median and "openvino_int8" in median:
        report["int8_speedup_vs_openvino"] = round(median["openvino"] / median["openvino_int8"], 2)
    if args.profile:
        report["openvino_node_seconds"] = {
            name: node_times(compiled(xml, args.size, profile=True), z)
            for name, xml in (
                ("openvino", folder / "vae_decoder.xml"),
                ("openvino_int8", decoder_int8.decoder_xml(folder)),
            )
            if name in fns
        }
    report["openvino_once"] = once
    return report


# ----------------------------------------------------------------------------- memory


def rss_child(args: argparse.Namespace, folder: Path) -> float:
    """One path alone in this process (its model built, one decode): peak RSS in MB. The
    OpenVINO paths read the graphs the parent wrote."""
    args.paths = [args.rss_child]
    if args.rss_child == "openvino_int8":
        model = compiled(decoder_int8.decoder_xml(folder), args.size)
        fns: dict[str, Any] = {"openvino_int8": lambda z: model({"z": z})[0]}
    else:
        fns, _ = decoders(args, folder)
    with torch.inference_mode():
        fns[args.rss_child](latents(2, args.size))
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def peak_rss(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in args.paths:
        command = [sys.executable, __file__, "--rss-child", path, "--size", str(args.size)]
        done = subprocess.run(
            [*command, "--cache", args.cache], capture_output=True, text=True, check=False
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        found[path] = json.loads(lines[-1])["peak_rss_mb"] if lines else done.stderr[-300:]
    return found


# ----------------------------------------------------------------------------- main


def main() -> None:
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")  # the JSON's; nncf's and OpenVINO's output to stderr
    os.dup2(2, 1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--profile", action="store_true", help="OpenVINO time per node type")
    parser.add_argument("--cache", default=None, help="where the graphs go (default: temp)")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not openvino_backend.available():
        args.paths = [p for p in args.paths if not p.startswith("openvino")]
    elif not decoder_int8.available() and "openvino_int8" in args.paths:
        args.paths.remove("openvino_int8")
    own = args.cache is None
    args.cache = args.cache or tempfile.mkdtemp(prefix="decode-speed-")
    folder = Path(args.cache) / "decoder"
    if args.rss_child:
        print(json.dumps({"peak_rss_mb": round(rss_child(args, folder))}), file=out, flush=True)
        return
    try:
        started = time.perf_counter()
        report: dict[str, Any] = {
            "benchmark": "decode_speed",
            "model": "SD 1.5 VAE decoder, random weights",
            "size": f"{args.size}x{args.size}",
            "threads": torch.get_num_threads(),
            "cpu_bf16_units": devices.cpu_bf16_units(),
            "load_average_at_start": round(os.getloadavg()[0], 2),
            **measure(args, folder),
        }
        if not args.no_rss:
            report["peak_rss_mb_per_path"] = peak_rss(args)
        report["load_average_at_end"] = round(os.getloadavg()[0], 2)
        report["bench_seconds"] = round(time.perf_counter() - started)
        print(json.dumps(report), file=out, flush=True)
    finally:
        if own:
            shutil.rmtree(args.cache, ignore_errors=True)


if __name__ == "__main__":
    main()
