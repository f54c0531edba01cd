"""Write the trained starter model as an ordinary diffusers Stable Diffusion folder.

    python -m starter.export [--run runs/starter] [--out resources/starter-model]

Uses the EMA weights of the last checkpoint, sets the autoencoder's scaling factor
measured on the data, fits the linear latent-to-RGB preview factors on the
autoencoder (latent_rgb.json) and replaces the output folder atomically.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
from diffusers.training_utils import EMAModel

from starter.architecture import (
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
)
from starter.captions import sample_scene
from starter.shapes import render

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "resources" / "starter-model"


@torch.no_grad()
def fit_latent_rgb(vae: torch.nn.Module, scaling: float, count: int = 512) -> dict:
    """Least-squares map from a (scaled) latent pixel to the RGB of its 8x8 patch, [-1, 1]."""
    rng = np.random.default_rng(99)
    images = [render(sample_scene(rng)) for _ in range(count)]
    x = torch.from_numpy(np.stack([np.asarray(i, np.float32) for i in images]) / 127.5 - 1)
    x = x.permute(0, 3, 1, 2)
    latents = vae.encode(x).latent_dist.mean * scaling
    target = torch.nn.functional.avg_pool2d(x, 8)
    a = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    a = torch.cat([a, torch.ones(len(a), 1)], dim=1)
    b = target.permute(0, 2, 3, 1).reshape(-1, 3)
    solution = torch.linalg.lstsq(a, b).solution
    return {
        "factors": [[round(v, 5) for v in row] for row in solution[:-1].tolist()],
        "bias": [round(v, 5) for v in solution[-1].tolist()],
        "space": "scaled latents (as the UNet sees them) to RGB in [-1, 1]",
    }


def export(run: Path, out: Path, vae_file: Path | None = None) -> Path:
    ckpt = torch.load(run / "unet_ckpt.pt", weights_only=False)
    scaling = float(ckpt["scaling"])
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(Path(tmp) / "tokenizer")
    unet, text_encoder, vae = build_unet(), build_text_encoder(tokenizer), build_vae()
    for module, key in ((unet, "ema_unet"), (text_encoder, "ema_text")):
        ema = EMAModel(module.parameters())
        ema.load_state_dict(ckpt[key])
        ema.copy_to(module.parameters())
    # The sharpened decoder if that stage has run (its encoder is the original one).
    candidates = (run / "vae_sharp.pt", run / "vae_sharp_partial.pt", run / "vae.pt")
    vae_file = vae_file or next(p for p in candidates if p.exists())
    vae.load_state_dict(torch.load(vae_file))
    vae.register_to_config(scaling_factor=scaling)
    scheduler = DPMSolverMultistepScheduler.from_config(build_scheduler().config)
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".starter-", dir=out.parent))
    pipe.save_pretrained(staging, safe_serialization=True)
    (staging / "latent_rgb.json").write_text(json.dumps(fit_latent_rgb(vae, scaling), indent=1))
    card = out / "README.md"
    if card.exists():
        shutil.copy(card, staging / "README.md")
    (staging / "training.json").write_text(
        json.dumps(
            {
                "unet_steps": ckpt["step"],
                "scaling_factor": scaling,
                "vae": vae_file.name,
            },
            indent=1,
        )
    )
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.replace(old)
        staging.replace(out)
        shutil.rmtree(old)
    else:
        staging.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/starter"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--vae",
        type=Path,
        help="autoencoder state to ship (default: the run's sharpened decoder if any)",
    )
    args = parser.parse_args()
    print(export(args.run, args.out, args.vae))


if __name__ == "__main__":
    main()
