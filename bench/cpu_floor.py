"""What this CPU can do at best for a Stable Diffusion picture: the work each part of the
picture needs (counted, not estimated) and the arithmetic rate this CPU reaches in
bfloat16 and in int8, so the figures bench/cpu_speed.py measures can be read against a
floor. Prints one JSON object.

    python bench/cpu_floor.py [--size 512] [--steps 20] [--repeats 5]

- Work: torch's FlopCounterMode over SD 1.5's UNet (one guided step: batch 2) and VAE
  decoder (engine/model_configs/sd1), built on the meta device (nothing is computed);
  split into convolutions, matrix products (linear layers) and attention (its two
  batched products).
- Rate: OpenVINO, the better of one request on all threads and one request per core side
  by side (the engine's two CPU streams), best of --repeats, for a 3x3
  convolution of the UNet's full-resolution level (320 channels at size/8, batch 2),
  a 3x3 convolution of the decoder's full-resolution level (128 channels at size) and a
  4096x4096x4096 matrix product; each in bfloat16 and in int8 (fake-quantized inputs
  and int8 weights, as nncf writes them: OpenVINO runs these on VNNI).
- Floors: the work divided by the best rate; "all int8" counts the convolutions and the
  matrix products at the int8 rate and attention at the bfloat16 rate (the engine keeps
  attention in bfloat16). A real graph adds normalisations, activations and memory
  traffic on top, so measured times sit above these floors; a goal below the floor
  cannot be met by any kernel on this CPU with that arithmetic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import devices  # noqa: E402
from engine.resources import model_configs_dir  # noqa: E402

CONFIGS = model_configs_dir() / "sd1"


def _config(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / name / "config.json").read_text())


def _split(counts: dict[Any, int]) -> dict[str, float]:
    """TFLOP per kind from FlopCounterMode's per-operator totals."""
    kinds = {"convolution": 0, "matmul": 0, "attention": 0}
    for op, flops in counts.items():
        name = str(op)
        if "convolution" in name:
            kinds["convolution"] += flops
        elif "attention" in name or "bmm" in name:  # on meta, attention runs as bmm
            kinds["attention"] += flops
        else:
            kinds["matmul"] += flops
    return {k: round(v / 1e12, 4) for k, v in kinds.items()}


def work(size: int) -> dict[str, dict[str, float]]:
    """TFLOP of one guided UNet step (batch 2), one unguided (batch 1) and one decode."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(_config("unet")).eval()
        vae = AutoencoderKL.from_config(_config("vae")).eval()
        latent = size // 8
        results = {}
        for name, batch in (("unet_guided_step", 2), ("unet_unguided_step", 1)):
            sample = torch.randn(batch, 4, latent, latent)
            text = torch.randn(batch, 77, unet.config.cross_attention_dim)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                unet(sample, torch.tensor(10.0), encoder_hidden_states=text)
            results[name] = _split(counter.get_flop_counts()["Global"])
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            vae.decode(torch.randn(1, 4, latent, latent))
        results["vae_decode"] = _split(counter.get_flop_counts()["Global"])
    for parts in results.values():
        parts["total"] = round(sum(parts.values()), 4)
    return results


def _fake_quantize(ops: Any, node: Any, low: float, high: float) -> Any:
    def c(v: float) -> Any:
        return ops.constant(np.float32(v))

    return ops.fake_quantize(node, c(low), c(high), c(low), c(high), 256)


def _int8_weight(ops: Any, ov: Any, shape: tuple[int, ...]) -> Any:
    """int8 weights with a per-output-channel scale, as nncf writes them."""
    rng = np.random.default_rng(0)
    weight = ops.constant(rng.integers(-127, 128, shape).astype(np.int8))
    scale = np.full((shape[0],) + (1,) * (len(shape) - 1), 0.01, np.float32)
    return ops.multiply(ops.convert(weight, ov.Type.f32), ops.constant(scale))


def _graph(kind: str, precision: str, size: int) -> tuple[Any, np.ndarray, float]:
    """A one-operation OpenVINO model, an input for it and the work it does (FLOP)."""
    import openvino as ov  # type: ignore[import-untyped]
    from openvino import opset13 as ops  # type: ignore[import-untyped]

    rng = np.random.default_rng(0)
    if kind == "matmul":
        n = 4096
        x = rng.standard_normal((n, n)).astype(np.float32)
        param = ops.parameter([n, n], ov.Type.f32)
        if precision == "int8":
            source, weight = _fake_quantize(ops, param, -4.0, 4.0), _int8_weight(ops, ov, (n, n))
        else:
            source = param
            weight = ops.constant(rng.standard_normal((n, n)).astype(np.float32) * 0.01)
        node = ops.matmul(source, weight, False, True)
        return ov.Model([node], [param]), x, 2.0 * n**3
    channels, side, batch = (320, size // 8, 2) if kind == "unet_conv" else (128, size, 1)
    x = rng.standard_normal((batch, channels, side, side)).astype(np.float32)
    param = ops.parameter(list(x.shape), ov.Type.f32)
    shape = (channels, channels, 3, 3)
    if precision == "int8":
        source, weight = _fake_quantize(ops, param, -4.0, 4.0), _int8_weight(ops, ov, shape)
    else:
        source = param
        weight = ops.constant(rng.standard_normal(shape).astype(np.float32) * 0.01)
    node = ops.convolution(source, weight, [1, 1], [1, 1], [1, 1], [1, 1])
    flops = 2.0 * batch * side * side * channels * channels * 9
    return ov.Model([node], [param]), x, flops


def _best_seconds(fn: Any, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def rates(size: int, repeats: int) -> dict[str, float]:
    """TFLOP/s (TOP/s for int8) of each operation on this CPU through OpenVINO: the
    better of one request on every thread and one request per core side by side (CPU
    streams, as the engine runs a guided step's halves)."""
    import openvino as ov  # type: ignore[import-untyped]

    core = ov.Core()
    threads = torch.get_num_threads()
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if devices.cpu_bf16_units() else "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
    }
    streams = {**config, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": threads}
    found = {}
    for kind in ("unet_conv", "decoder_conv", "matmul"):
        for precision in ("bf16", "int8"):
            model, x, flops = _graph(kind, precision, size)
            one_s = _seconds_one_request(core.compile_model(model, "CPU", config), x, repeats)
            side_s = _seconds_side_by_side(
                core.compile_model(model, "CPU", streams), x, threads, repeats
            )
            found[f"{kind}_{precision}"] = round(flops / min(one_s, side_s) / 1e12, 3)
    return found


def _seconds_one_request(compiled: Any, x: np.ndarray, repeats: int) -> float:
    request = compiled.create_infer_request()
    return _best_seconds(lambda: request.infer([x]), repeats)


def _seconds_side_by_side(compiled: Any, x: np.ndarray, parts: int, repeats: int) -> float:
    """Seconds per call with parts requests running at once."""
    requests = [compiled.create_infer_request() for _ in range(parts)]

    def together() -> None:
        for request in requests:
            request.start_async([x])
        for request in requests:
            request.wait()

    return _best_seconds(together, repeats) / parts


def floors(
    need: dict[str, dict[str, float]], rate: dict[str, float], steps: int
) -> dict[str, float]:
    bf16 = max(rate["unet_conv_bf16"], rate["decoder_conv_bf16"], rate["matmul_bf16"])
    conv8 = max(rate["unet_conv_int8"], rate["decoder_conv_int8"])
    mm8 = rate["matmul_int8"]

    def seconds(part: dict[str, float], int8: bool) -> float:
        if not int8:
            return part["total"] / bf16
        return part["convolution"] / conv8 + part["matmul"] / mm8 + part["attention"] / bf16

    out = {}
    for label, int8 in (("bf16", False), ("all_int8", True)):
        guided = seconds(need["unet_guided_step"], int8)
        unguided = seconds(need["unet_unguided_step"], int8)
        decode = seconds(need["vae_decode"], int8)
        out[f"unet_guided_step_s_{label}"] = round(guided, 3)
        out[f"vae_decode_s_{label}"] = round(decode, 3)
        out[f"picture_{steps}_steps_s_{label}"] = round(steps * guided + decode, 2)
        out[f"picture_1_step_s_{label}"] = round(unguided + decode, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    need = work(args.size)
    rate = rates(args.size, args.repeats)
    print(
        json.dumps(
            {
                "benchmark": "cpu_floor",
                "size": f"{args.size}x{args.size}",
                "threads": torch.get_num_threads(),
                "cpu_bf16_units": devices.cpu_bf16_units(),
                "tflop": need,
                "tflop_per_s": rate,
                "floors": floors(need, rate, args.steps),
            }
        )
    )


if __name__ == "__main__":
    main()
