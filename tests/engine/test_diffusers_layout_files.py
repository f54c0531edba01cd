"""Transformers shared as the one file diffusers' save_pretrained writes (every family's
model in diffusers' own names): told apart before loading as the original layouts are,
loaded offline with the separate encoder and VAE files, the same pixels as the tiny model
they came from."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import Recorder, never
from safetensors.torch import save_file

from engine import diffusers_layout
from engine.api import ModelFamily
from engine.checkpoint_keys import classify
from engine.file_family import file_family
from engine.quantized import read_header
from tests.single_file_cases import CASES, assert_same_pixels, cpu_manager

pytestmark = pytest.mark.usefixtures("one_torch_thread", "no_network")

_LIBRARY_NAMES = {ModelFamily.FLUX1: "flux"}  # the library's name where it is not the family's


def _in_diffusers_layout(module: object, path: Path) -> None:
    """The one file diffusers' save_pretrained writes for a transformer, shared under
    `path`'s name."""
    folder = path.parent / "saved"
    module.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    shutil.move(folder / "diffusion_pytorch_model.safetensors", path)
    shutil.rmtree(folder)


@pytest.mark.parametrize("name", list(CASES))
def test_a_transformer_in_diffusers_layout_draws_what_its_diffusers_folder_draws(
    tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    files, reference = case.write(tmp_path)
    _in_diffusers_layout(reference.transformer, files.transformer)

    assert file_family(files.transformer) == (case.family, case.variant)
    shapes = read_header(files.transformer).shapes
    # The model library lists it as a model of its family.
    assert classify(list(shapes), shapes, {}) == (
        "checkpoint",
        _LIBRARY_NAMES.get(case.family, case.family.value),
    )
    manager = cpu_manager(files.config_root)
    model = manager.get(str(files.transformer), Recorder(), never)
    assert (model.family, model.variant) == (case.family, case.variant)
    from_file = case.picture(model.pipe)
    folder = files.diffusers_folder
    if folder is None:
        folder = tmp_path / "diffusers"
        reference.save_pretrained(folder, safe_serialization=True)
    from_folder = case.picture(manager.get(str(folder), Recorder(), never).pipe)
    assert_same_pixels(from_file, from_folder)


def test_flux1_fill_in_diffusers_layout_loads_as_fill(tmp_path: Path) -> None:
    from tests.tiny_flow_files import write_flow_files

    files, reference = write_flow_files(tmp_path, "flux1", variant="flux1-fill")
    _in_diffusers_layout(reference.transformer, files.transformer)
    assert file_family(files.transformer) == (ModelFamily.FLUX1, "fill")
    model = cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)
    assert type(model.pipe).__name__ == "FluxFillPipeline"


@pytest.mark.parametrize(
    ("layers", "dual", "name", "variant"),
    [
        (2, (0,), "sd3.5_medium.safetensors", "3.5-medium"),
        (38, (), "sd3.5_large.safetensors", "3.5-large"),
        (38, (), "sd3.5_large_turbo.safetensors", "3.5-large-turbo"),
        (2, (), "sd3_medium.safetensors", ""),
    ],
)
def test_sd3_sizes_in_diffusers_layout_are_told_from_their_blocks(
    tmp_path: Path, layers: int, dual: tuple[int, ...], name: str, variant: str
) -> None:
    from tests.tiny_flow_models import tiny_sd3_transformer

    transformer = tiny_sd3_transformer(layers, dual_attention_layers=dual)
    _in_diffusers_layout(transformer, tmp_path / name)
    assert file_family(tmp_path / name) == (ModelFamily.SD3, variant)


def test_an_fp8_klein_in_diffusers_layout_stays_fp8(tmp_path: Path) -> None:
    case = CASES["flux2-klein"]
    files, reference = case.write(tmp_path)
    state = reference.transformer.state_dict()
    stored = {
        k: v.to(torch.float8_e4m3fn if v.ndim == 2 else torch.bfloat16).contiguous()
        for k, v in state.items()
    }
    save_file(stored, files.transformer)
    model = cpu_manager(files.config_root, "bfloat16").get(
        str(files.transformer), Recorder(), never
    )
    assert model.notes[0] == "fp8 (e4m3fn)"
    assert (
        model.pipe.transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    )
    image = case.picture(model.pipe)
    assert np.abs(image - case.picture(reference)).mean() < 0.05


def test_original_layout_files_are_left_as_they_are(tmp_path: Path) -> None:
    files, _ = CASES["flux1-dev"].write(tmp_path)
    shapes = read_header(files.transformer).shapes
    assert diffusers_layout.family(shapes) is None
    assert diffusers_layout.telling_shapes(shapes) == shapes


@pytest.mark.parametrize("name", ["flux1-dev", "sd3", "flux2-klein"])
def test_a_gguf_of_a_diffusers_layout_transformer_runs_quantized(tmp_path: Path, name: str) -> None:
    from tests.tiny_flow_files import write_gguf

    case = CASES[name]
    files, reference = case.write(tmp_path)
    _in_diffusers_layout(reference.transformer, files.transformer)
    gguf_file = write_gguf(files.transformer, files.transformer.with_suffix(".gguf"))
    files.transformer.unlink()
    assert file_family(gguf_file) == (case.family, case.variant)
    model = cpu_manager(files.config_root, "bfloat16").get(str(gguf_file), Recorder(), never)
    assert model.notes[0] == "GGUF Q8_0"
    assert any(type(m).__name__ == "GGUFLinear" for m in model.pipe.transformer.modules())
    assert np.abs(case.picture(model.pipe) - case.picture(reference)).mean() < 0.02
