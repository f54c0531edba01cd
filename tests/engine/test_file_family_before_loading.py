"""The family and variant of a single model file from its header, before anything loads
(engine/file_family.py), for FLUX.1, SD 3 / 3.5, Z-Image and whole SD checkpoints, and of
a hub id from its copy in the hub cache: the form and the command line then start from
that variant's defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from engine import cli, families
from engine.file_family import file_family

P = "model.diffusion_model."


def write(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.zeros(s, np.float16) for k, s in shapes.items()}, str(path))
    return path


FLUX = {"double_blocks.0.img_attn.qkv.weight": (6, 2), "img_in.weight": (2, 64)}
SD3 = {f"joint_blocks.{i}.x_block.attn.qkv.weight": (3, 1) for i in range(2)}
ZIMAGE = {"layers.0.adaLN_modulation.0.weight": (2, 2), "cap_embedder.1.weight": (2, 2)}

CASES = [
    ("flux1-dev.safetensors", FLUX | {"guidance_in.in_layer.weight": (2, 2)}, "flux1", "dev"),
    ("flux1-schnell.safetensors", FLUX, "flux1", "schnell"),
    ("flux1-fill-dev.safetensors", FLUX | {"img_in.weight": (2, 384)}, "flux1", "fill"),
    # ComfyUI's all-in-one FLUX checkpoint: everything under model.diffusion_model.
    ("flux-aio.safetensors", {P + k: v for k, v in FLUX.items()}, "flux1", "schnell"),
    ("sd3_medium.safetensors", SD3, "sd3", ""),
    ("sd3.5_medium.safetensors", SD3 | {"joint_blocks.0.x_block.attn2.qkv.weight": (3, 1)},
     "sd3", "3.5-medium"),
    ("sd3.5_large.safetensors",
     {f"joint_blocks.{i}.x_block.attn.qkv.weight": (3, 1) for i in range(38)}, "sd3",
     "3.5-large"),
    ("sd3.5_large_turbo.safetensors",
     {f"joint_blocks.{i}.x_block.attn.qkv.weight": (3, 1) for i in range(38)}, "sd3",
     "3.5-large-turbo"),
    ("z_image_turbo_bf16.safetensors", ZIMAGE, "zimage", "turbo"),
    ("z-image-base.safetensors", ZIMAGE, "zimage", "base"),
    ("v1-5-pruned.safetensors",
     {P + "input_blocks.0.0.weight": (2, 2),
      "cond_stage_model.transformer.text_model.final_layer_norm.weight": (2,)}, "sd1", ""),
    ("v2-1_768.safetensors",
     {P + "input_blocks.0.0.weight": (2, 2), "cond_stage_model.model.ln_final.weight": (2,)},
     "sd2", ""),
    ("sd_xl_base_1.0.safetensors",
     {P + "input_blocks.0.0.weight": (2, 2),
      "conditioner.embedders.1.model.ln_final.weight": (2,)}, "sdxl", ""),
]  # fmt: skip


@pytest.mark.parametrize(("name", "shapes", "family", "variant"), CASES, ids=[c[0] for c in CASES])
def test_a_model_file_names_its_family_and_variant_from_its_header(
    tmp_path: Path, name: str, shapes: dict, family: str, variant: str
) -> None:
    path = write(tmp_path / name, shapes)
    assert file_family(path) == (family, variant)
    profile, found = families.describe_source(str(path)) or (None, None)
    assert profile is not None and (profile.family, found) == (family, variant)


def test_files_the_header_does_not_tell_are_left_to_the_engine(tmp_path: Path) -> None:
    assert file_family(write(tmp_path / "vae.safetensors", {"decoder.up.0.w": (2,)})) is None
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 16)
    assert file_family(tmp_path / "broken.safetensors") is None
    assert families.describe_source(str(tmp_path / "missing.safetensors")) is None


def test_the_cli_starts_a_flux_schnell_file_from_its_own_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "flux1-schnell.safetensors", FLUX)
    argv = ["generate", "--prompt", "p", "--model", str(path), "--output", str(tmp_path / "o.png")]
    args: argparse.Namespace = cli._parser().parse_args(argv)
    request = cli.build_request(args)
    schnell = families.profile("flux1").variant("schnell")
    assert (request.steps, request.scheduler) == (schnell.steps, schnell.scheduler.value)


def test_a_hub_id_already_in_the_hub_cache_is_described_from_its_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    def cache(repo: str, index: dict, transformer: dict) -> None:
        repo_dir = tmp_path / ("models--" + repo.replace("/", "--"))
        snapshot = repo_dir / "snapshots" / "0123abcd"
        (snapshot / "transformer").mkdir(parents=True)
        (snapshot / "model_index.json").write_text(json.dumps(index))
        (snapshot / "transformer" / "config.json").write_text(json.dumps(transformer))
        (repo_dir / "refs").mkdir()
        (repo_dir / "refs" / "main").write_text("0123abcd")

    cache("black-forest-labs/FLUX.1-schnell", {"_class_name": "FluxPipeline"},
          {"guidance_embeds": False})  # fmt: skip
    cache("someone/Z-Image-base", {"_class_name": "ZImagePipeline"}, {})
    found = families.describe_source("black-forest-labs/FLUX.1-schnell")
    assert found is not None and (found[0].family, found[1]) == ("flux1", "schnell")
    found = families.describe_source("someone/Z-Image-base")  # the repository's name tells
    assert found is not None and (found[0].family, found[1]) == ("zimage", "base")
    assert families.describe_source("someone/not-downloaded") is None
