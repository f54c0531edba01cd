"""tools/fit_latent_rgb.py fits a linear latent-to-RGB map on a VAE, in the format
model folders and family profiles carry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tiny_flow_models import tiny_flow_vae

from engine.models import read_latent_rgb
from engine.preview import LatentRGB
from tools import fit_latent_rgb


def test_the_fitted_map_explains_the_vaes_colours_better_than_none() -> None:
    torch.manual_seed(0)
    vae = tiny_flow_vae().eval()
    pictures = fit_latent_rgb.generated_pictures(32, count=16)
    factors, bias, r2 = fit_latent_rgb.fit_factors(vae, pictures)
    assert len(factors) == 16 and all(len(row) == 3 for row in factors) and len(bias) == 3
    assert 0.0 < r2 <= 1.0
    # Applied as the engine's previews apply it: a flat colour comes out near that colour.
    red = np.zeros((32, 32, 3), np.float32)
    red[..., 0] = 0.8
    x = torch.from_numpy(red).permute(2, 0, 1)[None]
    with torch.no_grad():
        z = (vae.encode(x).latent_dist.mean - vae.config.shift_factor) * vae.config.scaling_factor
    preview = LatentRGB((factors, bias))(z).astype(float).mean(axis=(0, 1))
    assert preview[0] > preview[1] and preview[0] > preview[2]


def test_the_script_writes_a_latent_rgb_file_the_engine_reads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tiny_flow_vae().save_pretrained(tmp_path / "model" / "vae")
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 250, 40)]):
        Image.new("RGB", (40, 40), colour).save(pictures / f"{i}.png")
    out = tmp_path / "latent_rgb.json"
    code = fit_latent_rgb.main(
        ["--vae", str(tmp_path / "model"), "--images", str(pictures), "--size", "32"]
        + ["--out", str(out)]
    )
    assert code == 0
    factors, bias = read_latent_rgb(out) or ([], [])
    assert len(factors) == 16 and len(bias) == 3
    assert json.loads(out.read_text())["factors"] == factors
