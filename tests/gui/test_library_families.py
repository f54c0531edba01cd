"""The model library names every family the engine runs: diffusers folders through the
family registry (as the loader will detect them), Z-Image files by their keys, and the
Models dialog's words for each (FLUX.1, not "flux")."""

from __future__ import annotations

import json
from pathlib import Path

from library_files import FLUX_KEYS, write_safetensors

from engine.library import ModelLibrary
from guiapp.widgets.models_dialog import FAMILY_NAMES


def folder(path: Path, class_name: str, transformer: dict | None = None) -> Path:
    component = "transformer" if transformer is not None else "unet"
    (path / component).mkdir(parents=True)
    index = {"_class_name": class_name, component: ["diffusers", "X"]}
    (path / "model_index.json").write_text(json.dumps(index))
    if transformer is not None:
        (path / component / "config.json").write_text(json.dumps(transformer))
    (path / component / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 64)
    return path


def test_folders_and_files_of_the_newer_families_are_named_as_the_loader_names_them(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    folder(models / "checkpoints" / "z-image-turbo", "ZImagePipeline", {})
    folder(models / "checkpoints" / "flux-schnell", "FluxPipeline", {"guidance_embeds": False})
    folder(models / "checkpoints" / "flux-fill", "FluxFillPipeline", {"in_channels": 384})
    folder(models / "checkpoints" / "sana", "SanaPipeline", {})
    folder(models / "checkpoints" / "sd35", "StableDiffusion3Pipeline", {})
    write_safetensors(
        models / "diffusion_models" / "z_image_turbo_bf16.safetensors",
        {"context_refiner.0.attention.qkv.weight": [3, 2], "x_embedder.weight": [2, 64]},
    )
    write_safetensors(models / "diffusion_models" / "flux1-dev.safetensors", FLUX_KEYS)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(models)
    library.scan()
    found = {e.name: e.family for e in library.entries()}
    assert found == {
        "z-image-turbo": "zimage",
        "flux-schnell": "flux1",
        "flux-fill": "flux1",
        "sana": "sana",
        "sd35": "sd3",
        "z_image_turbo_bf16": "zimage",
        "flux1-dev": "flux",
    }
    words = {name: FAMILY_NAMES[family] for name, family in found.items()}
    assert words["flux-schnell"] == words["flux1-dev"] == "FLUX.1"
    assert words["z-image-turbo"] == words["z_image_turbo_bf16"] == "Z-Image"


def test_every_family_the_engine_runs_has_a_word_in_the_models_dialog() -> None:
    from engine.api import ModelFamily

    assert {f.value for f in ModelFamily} <= set(FAMILY_NAMES)
