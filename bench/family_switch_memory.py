"""Memory when switching model families: does loading FLUX.1 give back SD3's memory?

Writes an SD3 and a FLUX.1 transformer-only file (random weights, a few hundred MB each,
real key layouts, separate text encoders and VAE as ComfyUI keeps them), then through one
ModelManager on the CPU: load SD3 and make a picture, switch to FLUX.1 and make one,
switch back to SD3, release. Prints one JSON object with the resident memory (RSS, MB)
after each stage and each transformer's size, and what the switches left behind:
`kept_after_switch_mb` = RSS with FLUX.1 loaded minus (RSS with SD3 loaded minus SD3's
size plus FLUX.1's size); `growth_over_cycle_mb` = RSS with SD3 loaded the second time
minus the first; `left_after_release_mb` = RSS after release minus before the first load.

Usage: OMP_NUM_THREADS=1 nice python bench/family_switch_memory.py [--layers 6]
       [--width 768] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6, help="transformer blocks of each")
    parser.add_argument("--width", type=int, default=768, help="a multiple of 64")
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()

    import torch
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
    from tiny_flow_files import write_flow_files

    from engine.memory import free_memory
    from engine.models import ModelManager

    heads = args.width // 64
    torch.manual_seed(0)
    flux = FluxTransformer2DModel(
        patch_size=1, in_channels=64, out_channels=64, num_layers=args.layers // 2,
        num_single_layers=args.layers, attention_head_dim=64, num_attention_heads=heads,
        joint_attention_dim=32, pooled_projection_dim=16, guidance_embeds=True,
        axes_dims_rope=(8, 28, 28),
    )  # fmt: skip
    sd3 = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=args.layers,
        attention_head_dim=64, num_attention_heads=heads, caption_projection_dim=args.width,
        joint_attention_dim=32, pooled_projection_dim=32, pos_embed_max_size=32,
    )  # fmt: skip
    sizes = {
        name: sum(p.numel() for p in model.parameters())
        * torch.empty((), dtype=getattr(torch, args.dtype)).element_size()
        / 1e6
        for name, model in (("sd3", sd3), ("flux1", flux))
    }
    with tempfile.TemporaryDirectory() as tmp:
        sd3_files, reference = write_flow_files(Path(tmp) / "sd3", "sd3", transformer=sd3)
        flux_files, reference = write_flow_files(Path(tmp) / "flux", "flux1", transformer=flux)
        del sd3, flux, reference  # only the files remain
        # One config root holding both families' configs, as engine/model_configs does.
        configs = Path(tmp) / "configs"
        configs.mkdir()
        for files in (sd3_files, flux_files):
            for folder in files.config_root.iterdir():
                folder.rename(configs / folder.name)
        manager = ModelManager(device="cpu", dtype=args.dtype, config_root=configs)
        free_memory()
        marks: dict[str, float] = {"before_mb": rss_mb()}

        def use(files: object, mark: str) -> None:
            model = manager.get(str(files.transformer), lambda *_: None, lambda: False)  # type: ignore[attr-defined]
            generator = torch.Generator().manual_seed(0)
            model.pipe("a red circle", num_inference_steps=2, height=64, width=64,
                       generator=generator, output_type="np")  # fmt: skip
            del model
            free_memory()
            marks[mark] = rss_mb()

        use(sd3_files, "sd3_loaded_mb")
        use(flux_files, "flux1_loaded_mb")
        use(sd3_files, "sd3_again_mb")
        manager.release()
        marks["released_mb"] = rss_mb()
    expected_flux = marks["sd3_loaded_mb"] - sizes["sd3"] + sizes["flux1"]
    result = {
        "transformer_mb": {k: round(v, 1) for k, v in sizes.items()},
        "rss_mb": {k: round(v, 1) for k, v in marks.items()},
        "kept_after_switch_mb": round(marks["flux1_loaded_mb"] - expected_flux, 1),
        "growth_over_cycle_mb": round(marks["sd3_again_mb"] - marks["sd3_loaded_mb"], 1),
        "left_after_release_mb": round(marks["released_mb"] - marks["before_mb"], 1),
        "dtype": args.dtype,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
