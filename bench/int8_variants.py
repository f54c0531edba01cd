"""Which layers of SD 1.5's UNet can run int8 and keep the picture: the shipped recipe
(engine/backends/int8.py) against variants that quantize more or less, on this CPU.
Prints one JSON object.

    python bench/int8_variants.py [--size 512] [--variants recipe,all_matmuls,...]
                                  [--repeats 3] [--cache DIR]

The model is SD 1.5's architecture with random weights (bench/cpu_speed.py's, seed 0),
converted to OpenVINO and calibrated the way the engine does it (a 20-step guided run of
the bfloat16 graph keeps its UNet inputs). Each variant is quantized in a process of its
own (its peak memory is that process's) and measured there:

- step: one guided UNet call at batch 2 (two CPU streams, as the engine runs it), taking
  turns with the shipped recipe's graph and the bfloat16 graph, median of --repeats;
  "vs_recipe" is the ratio of those medians in the same process;
- correlation with the bfloat16 graph on the held-out calls (the engine's own check,
  whose bar "auto" applies: 0.999);
- correlation with float32's UNet outputs on noise latents at t=500 with the prompt's
  real embeddings and with bench/cpu_speed.py's random ones (the issue's bar: 0.999).

Variants: recipe (as shipped), weights_only_matmuls (no matrix product with int8
activations: the previous recipe), all_matmuls (every matrix product with int8
activations), ff_out (the feed-forward's second product too), attention_v_out
(attention's value and output projections too), first_down_block, last_up_block (the
full-resolution level's convolutions, each half), full_resolution (both),
all_matmuls_full_resolution.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cpu_speed  # noqa: E402

from engine.backends import int8, openvino_backend  # noqa: E402

SIZE_NAME = "{0}x{0}"
FULL_RES = (r"\.down_blocks\.0\.", r"\.up_blocks\.{last}\.")


def _names(model: Any, kind: str) -> list[str]:
    return [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == kind]


def _last_up(model: Any) -> str:
    ups = [
        int(m.group(1))
        for n in _names(model, "Convolution")
        if (m := re.search(r"\.up_blocks\.(\d+)\.", n))
    ]
    return str(max(ups))


def _without(kept: list[str], pattern: str) -> list[str]:
    """kept minus the convolutions pattern finds (they go int8), shortcuts staying."""
    found = re.compile(pattern)
    return [n for n in kept if not found.search(n) or "conv_shortcut" in n]


def _variant(name: str, model: Any) -> tuple[list[str], list[str]]:
    """(convolutions kept bfloat16, matrix products with int8 activations)."""
    kept, active = int8.kept_bfloat16(model), int8.int8_matmuls(model)
    matmuls = _names(model, "MatMul")
    last = _last_up(model)
    down0, up_last = FULL_RES[0], FULL_RES[1].replace("{last}", last)
    choices: dict[str, Callable[[], tuple[list[str], list[str]]]] = {
        "recipe": lambda: (kept, active),
        "weights_only_matmuls": lambda: (kept, []),
        "all_matmuls": lambda: (kept, matmuls),
        "ff_out": lambda: (kept, active + [n for n in matmuls if ".ff.net.2/" in n]),
        "attention_v_out": lambda: (
            kept,
            active + [n for n in matmuls if re.search(r"\.attn[12]\.to_(v|out)", n)],
        ),
        "first_down_block": lambda: (_without(kept, down0), active),
        "last_up_block": lambda: (_without(kept, up_last), active),
        "full_resolution": lambda: (_without(_without(kept, down0), up_last), active),
        "all_matmuls_full_resolution": lambda: (
            _without(_without(kept, down0), up_last),
            matmuls,
        ),
    }
    if name not in choices:
        raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(choices)}")
    return choices[name]()


# ----------------------------------------------------------------------------- parent


def prepare(args: argparse.Namespace) -> Path:
    """Convert, calibrate and keep float32's reference outputs; the OpenVINO folder."""
    fp32 = cpu_speed.build_pipeline(torch.float32)
    bf16 = cpu_speed.copy_as(fp32, torch.bfloat16)
    folder = openvino_backend.cache_folder(args.cache, bf16.unet, bf16.vae)
    openvino_backend.convert_to_cache(
        bf16.unet, bf16.vae, folder, torch.bfloat16, lambda *_: None, lambda: False
    )
    size = SIZE_NAME.format(args.size)
    calibration = int8.calibration_file(folder, size)
    if not calibration.is_file():
        ov_model = openvino_backend.OpenVINOModel(bf16.unet, bf16.vae, folder, torch.bfloat16)
        recorder = int8.Recorder(calibration)
        cpu_speed._calibration_run(bf16, ov_model, recorder, args.size, 20)
        recorder.save()
    latent = args.size // 8
    with torch.inference_mode():
        positive, negative = fp32.encode_prompt(
            cpu_speed.PROMPT, "cpu", 1, True, cpu_speed.NEGATIVE
        )
        torch.manual_seed(1)  # bench/cpu_speed.py's UNet input
        sample = torch.randn(2, 4, latent, latent)
        random_hidden = torch.randn(2, 77, 768)
        cases = {"real_prompt": torch.cat([negative, positive]), "random_hidden": random_hidden}
        arrays = {"sample": sample.numpy()}
        for name, hidden in cases.items():
            arrays[f"{name}__hidden"] = hidden.numpy()
            arrays[f"{name}__float32"] = fp32.unet(
                sample, torch.tensor(500.0), hidden
            ).sample.numpy()
    np.savez(folder / "int8-variants-reference.npz", **arrays)
    return folder


def run_child(folder: Path, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--child", variant, "--folder", str(folder),
        "--size", str(args.size), "--repeats", str(args.repeats),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"variant": variant, "failed": f"exit {done.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- child


def child(args: argparse.Namespace) -> dict[str, Any]:
    import openvino as ov  # type: ignore[import-untyped]

    folder, size = Path(args.folder), SIZE_NAME.format(args.size)
    core = ov.Core()
    model = core.read_model(str(folder / "unet.xml"))
    samples = int8.one_picture_each(int8.load_calibration(int8.calibration_file(folder, size)))
    kept, active = _variant(args.child, model)
    start = time.perf_counter()
    quantized = int8.quantize_model(model, samples, kept=kept, with_activations=active)
    target = folder / "int8-variants" / f"{args.child}-{size}.xml"
    int8.save_atomically(quantized, target)
    quantize_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del quantized, model

    config = {
        "INFERENCE_PRECISION_HINT": "bf16",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
    }
    part = openvino_backend.CompiledPart(core, target, config, streams=2)
    bf16 = openvino_backend.CompiledPart(core, folder / "unet.xml", config, streams=2)
    recipe_xml = folder / "int8-variants" / f"recipe-{size}.xml"
    recipe = None
    if args.child != "recipe" and recipe_xml.is_file():
        recipe = openvino_backend.CompiledPart(core, recipe_xml, config, streams=2)
    held = int8.load_calibration(int8.calibration_file(folder, size), held_out=True)
    versus_bf16 = int8.correlation([part(s) for s in held], [bf16(s) for s in held])
    versus_float32 = _versus_float32(part, folder)
    call = held[0]
    paths = {"variant": part, "bfloat16": bf16, **({"recipe": recipe} if recipe else {})}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for graph in paths.values():
        graph(call)  # compile and warm up
    for r in range(args.repeats):
        for name in list(paths) if r % 2 == 0 else list(reversed(paths)):
            start = time.perf_counter()
            paths[name](call)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(v) for name, v in times.items()}
    return {
        "variant": args.child,
        "int8_convolutions": len(_names(core.read_model(str(target)), "Convolution")) - len(kept),
        "int8_activation_matmuls": len(active),
        "quantize_s": round(quantize_s, 1),
        "quantize_peak_rss_mb": round(peak_mb),
        "step_s": round(median["variant"], 3),
        "vs_bfloat16": round(median["variant"] / median["bfloat16"], 3),
        "vs_recipe": round(median["variant"] / median["recipe"], 3) if recipe else None,
        "correlation_vs_bfloat16_held_out": round(versus_bf16, 6),
        "correlation_vs_float32_t500": versus_float32,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--variants", default="recipe,weights_only_matmuls,all_matmuls,"
                        "ff_out,attention_v_out,first_down_block,last_up_block,"
                        "full_resolution,all_matmuls_full_resolution")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/int8-variants"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    if args.child:
        print(json.dumps(child(args)))
        return
    start = time.perf_counter()
    folder = prepare(args)
    names = args.variants.split(",")
    if "recipe" in names:  # first: the others' speed is read against it
        names.remove("recipe")
        names.insert(0, "recipe")
    results = [run_child(folder, name, args) for name in names]
    print(
        json.dumps(
            {
                "benchmark": "int8_variants",
                "model": "SD 1.5 architecture, random weights",
                "size": SIZE_NAME.format(args.size),
                "recipe": int8.RECIPE,
                "bfloat16_graph_vs_float32_t500": _bf16_reference(folder),
                "variants": results,
                "seconds": round(time.perf_counter() - start),
            }
        )
    )


def _bf16_reference(folder: Path) -> dict[str, float]:
    """The bfloat16 OpenVINO graph's own correlation with float32 on the same inputs."""
    import openvino as ov  # type: ignore[import-untyped]

    config = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    part = openvino_backend.CompiledPart(ov.Core(), folder / "unet.xml", config, streams=2)
    found = _versus_float32(part, folder)
    part.release()
    return found


def _versus_float32(part: Any, folder: Path) -> dict[str, float]:
    """Correlation of a graph's outputs with float32's on prepare()'s inputs."""
    found = {}
    with np.load(folder / "int8-variants-reference.npz") as ref:
        for case in ("real_prompt", "random_hidden"):
            inputs = {
                "sample": ref["sample"],
                "timestep": np.full(2, 500.0, np.float32),
                "encoder_hidden_states": ref[f"{case}__hidden"],
            }
            found[case] = round(int8.correlation([part(inputs)], [ref[f"{case}__float32"]]), 6)
    return found


if __name__ == "__main__":
    main()
