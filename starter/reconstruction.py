"""How much of each evaluation scene survives the autoencoder alone: the ceiling the
UNet cannot beat, whatever it learns.

    python -m starter.reconstruction runs/starter/vae_sharp.pt [--json FILE]
    python -m starter.reconstruction resources/starter-model/vae/diffusion_pytorch_model.safetensors

Draws the evaluation's scenes, encodes and decodes them, and reads the result with the
same analyser: the shape of the single object by size, and both objects of the pairs.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from starter.analyse import analyse
from starter.architecture import build_vae
from starter.evaluate import sample_cases, score_pair
from starter.shapes import Scene, render
from starter.train import to_tensor


@torch.no_grad()
def round_trip(vae: torch.nn.Module, scenes: list[Scene], chunk: int = 40) -> list[Image.Image]:
    images: list[Image.Image] = []
    for i in range(0, len(scenes), chunk):
        x = to_tensor([render(s) for s in scenes[i : i + chunk]])
        y = vae.decode(vae.encode(x).latent_dist.mean).sample
        pixels = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        images += [Image.fromarray(np.ascontiguousarray(p)) for p in pixels]
    return images


def measure(state_file: Path, singles: int = 200, pairs: int = 120) -> dict:
    vae = build_vae().eval()
    if state_file.suffix == ".safetensors":
        vae.load_state_dict(load_file(state_file))
    else:
        vae.load_state_dict(torch.load(state_file))
    single_scenes, pair_scenes, _ = sample_cases({"single": singles, "pair": pairs, "inpaint": 0})
    right: dict[str, list[bool]] = {"small": [], "large": []}
    for scene, image in zip(single_scenes, round_trip(vae, single_scenes), strict=True):
        found, obj = analyse(image).objects, scene.objects[0]
        right[obj.size].append(bool(found) and found[0].shape == obj.shape)
    pair_right = [
        score_pair(analyse(image), scene)
        for scene, image in zip(pair_scenes, round_trip(vae, pair_scenes), strict=True)
    ]
    return {
        "shape": round(float(np.mean(right["small"] + right["large"])), 4),
        "shape_small": round(float(np.mean(right["small"])), 4),
        "shape_large": round(float(np.mean(right["large"])), 4),
        "pair": round(float(np.mean(pair_right)), 4),
        "scenes": {"single": singles, "pair": pairs},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "state",
        type=Path,
        help="an autoencoder's weights: a training state (vae.pt, vae_sharp.pt) or an "
        "exported vae/diffusion_pytorch_model.safetensors",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    text = json.dumps(measure(args.state))
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
