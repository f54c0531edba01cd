"""What LoRAs cost: a denoising step with LoRAs merged against one without, and the time
to change the set of LoRAs between jobs, on a real-size SD 1.5 UNet and text encoder
(engine/model_configs/sd1, random weights: speed does not depend on the values) with two
kohya-layout LoRAs of about 150 MB each (rank 128, float16, UNet attention/feed-forward/
projection layers and text-encoder attention/MLP layers) that the script writes itself.

    python bench/lora.py [--rank 128] [--size 512] [--dtype float32] [--repeats 3]

Prints one JSON object. Steps are one UNet call on a batch of 2 (guidance), alternated
with and without the LoRA; the step ratio is the median of the pairs. Switch times go
through the engine's own code (LoraCache + LoraMerger): none -> A reads and converts
file A (cold), A -> B reads B, B -> none restores; "none -> A again" is A from the cache.
`of_which_reading_files_s` is the part spent reading and converting files not yet
cached; `merge_gflop` is the arithmetic one merge needs (what bounds it on a CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The engine has the pipelines imported before any LoRA is read; so does the bench.
from diffusers import StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402, F401
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from engine.addons.lora import LoraCache, LoraMerger, LoraUse  # noqa: E402
from engine.resources import model_configs_dir  # noqa: E402

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in",
                "proj_out")  # fmt: skip
TE_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def build(dtype: torch.dtype) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    torch.manual_seed(0)
    unet_config = UNet2DConditionModel.load_config(model_configs_dir() / "sd1" / "unet")
    unet = UNet2DConditionModel.from_config(unet_config).to(dtype).eval()
    te_config = CLIPTextConfig.from_pretrained(model_configs_dir() / "sd1" / "text_encoder")
    return unet, CLIPTextModel(te_config).to(dtype).eval()


def write_lora(unet, te, rank: int, path: Path, seed: int) -> int:
    """A kohya-layout LoRA over the usual targets; returns its size in bytes."""
    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, root, targets in (("lora_unet_", unet, UNET_TARGETS), ("lora_te_", te, TE_TARGETS)):
        for name, module in root.named_modules():
            if not name.endswith(targets) or not isinstance(
                module, torch.nn.Linear | torch.nn.Conv2d
            ):
                continue
            weight = module.weight
            out, inp = weight.shape[0], weight[0].numel()
            te_name = name if prefix == "lora_unet_" else f"text_model.{name}"
            key = prefix + te_name.replace(".", "_")
            down = torch.randn(rank, inp, generator=gen) * inp**-0.5
            up = torch.randn(out, rank, generator=gen) * 0.01
            tensors[f"{key}.lora_down.weight"] = down.reshape(rank, *weight.shape[1:]).half()
            tensors[f"{key}.lora_up.weight"] = up.reshape(
                out, rank, *(1,) * (weight.ndim - 2)
            ).half()
            tensors[f"{key}.alpha"] = torch.tensor(rank / 2)
    save_file(tensors, str(path), metadata={"ss_base_model_version": "sd_v1"})
    return path.stat().st_size


def step_seconds(unet, latents, t, context) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        unet(latents, t, encoder_hidden_states=context)
    return time.perf_counter() - start


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3, help="step pairs")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)

    unet, te = build(dtype)
    tmp = Path(tempfile.mkdtemp())
    size_a = write_lora(unet, te, args.rank, tmp / "a.safetensors", 1)
    size_b = write_lora(unet, te, args.rank, tmp / "b.safetensors", 2)

    side = args.size // 8
    latents = torch.randn(2, 4, side, side, dtype=dtype)
    context = torch.randn(2, 77, 768, dtype=dtype)
    t = torch.tensor(500)
    cache = LoraCache()
    merger = LoraMerger({"unet": unet, "text_encoder": te}, "sd1")

    def switch(names: list[str]) -> tuple[float, float]:
        """(seconds in all, of which reading/converting files not yet cached)."""
        start = time.perf_counter()
        paths = [tmp / f"{name}.safetensors" for name in names]
        files = [(LoraUse(p.stem, p, 0.8, 0.8), cache.get(p, "sd1", dtype)) for p in paths]
        read = time.perf_counter() - start
        merger.apply(files)
        return time.perf_counter() - start, read

    step_seconds(unet, latents, t, context)  # warm-up
    base_steps, lora_steps = [], []
    switches: dict[str, float] = {}
    reads: dict[str, float] = {}
    for i in range(args.repeats):
        base_steps.append(step_seconds(unet, latents, t, context))
        key = "none -> A" if i == 0 else f"none -> A again ({i})"
        switches[key], reads[key] = switch(["a"])
        lora_steps.append(step_seconds(unet, latents, t, context))
        if i == 0:
            switches["A -> B"], reads["A -> B"] = switch(["b"])
            lora_steps.append(step_seconds(unet, latents, t, context))
            switches["B -> none"], reads["B -> none"] = switch([])
        else:
            switch([])
    base = statistics.median(base_steps)
    ratios = [lora / b for lora, b in zip(lora_steps, base_steps, strict=False)]
    lora_a = cache.get(tmp / "a.safetensors", "sd1", dtype)
    touched = sum(len(v) for v in lora_a.layers.values())
    # addmm_ work of one merge: 2 * out * in * rank per layer
    gflop = sum(2 * x.up.shape[0] * x.down[0].numel() * x.down.shape[0]
                for v in lora_a.layers.values() for x in v.values()) / 1e9  # fmt: skip
    print(
        json.dumps(
            {
                "model": "SD 1.5 UNet + text encoder, random weights",
                "dtype": args.dtype,
                "latent": [2, 4, side, side],
                "threads": torch.get_num_threads(),
                "lora_file_bytes": [size_a, size_b],
                "lora_rank": args.rank,
                "lora_layers": touched,
                "merge_gflop": round(gflop, 1),
                "base_step_s": round(base, 3),
                "lora_step_s": round(statistics.median(lora_steps), 3),
                "step_ratio_median": round(statistics.median(ratios), 4),
                "switch_s": {k: round(v, 3) for k, v in switches.items()},
                "of_which_reading_files_s": {k: round(v, 3) for k, v in reads.items()},
                "switch_over_base_step": {k: round(v / base, 3) for k, v in switches.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
