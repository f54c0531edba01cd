"""FLUX.1 and SD3 transformer files in the original layouts convert to diffusers' exactly,
at the tiny test sizes and at the shipped configs' real sizes (on the meta device)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

from engine.flow_layouts import flux_to_diffusers, is_flux_layout
from engine.resources import model_configs_dir
from tests.flow_checkpoint import DIFFUSION_PREFIX, flux_to_original, sd3_to_original
from tests.tiny_flow_models import tiny_flux_pipeline, tiny_sd3_pipeline


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        if not a[key].is_meta:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("variant", ["dev", "schnell", "fill"])
def test_a_flux_file_in_bfl_layout_converts_back_to_the_same_weights(
    tmp_path: Path, variant: str
) -> None:
    state = tiny_flux_pipeline(tmp_path, variant=variant).transformer.state_dict()
    original = flux_to_original(state, DIFFUSION_PREFIX)
    assert is_flux_layout(list(original))
    assert any(k.endswith("img_attn.qkv.weight") for k in original)  # fused, as BFL ships
    _same(flux_to_diffusers(original), state)


def test_an_sd3_file_in_stability_layout_converts_back_with_diffusers_own_converter(
    tmp_path: Path,
) -> None:
    state = tiny_sd3_pipeline(tmp_path).transformer.state_dict()
    original = sd3_to_original(state)
    assert "joint_blocks.0.x_block.attn.qkv.weight" in original
    _same(convert_sd3_transformer_checkpoint_to_diffusers(dict(original)), state)


@pytest.mark.parametrize("folder", ["flux1", "flux1-schnell", "flux1-fill"])
def test_the_shipped_flux_configs_match_full_size_files_key_for_key(folder: str) -> None:
    config = FluxTransformer2DModel.load_config(model_configs_dir() / folder / "transformer")
    with init_empty_weights():
        model = FluxTransformer2DModel.from_config(config)
    state = model.state_dict()
    original = flux_to_original(state)
    # FLUX.1 is 3072 wide with 19 double and 38 single blocks: 11.9 billion weights.
    assert original["img_in.weight"].shape[0] == 3072
    assert sum(t.numel() for t in state.values()) == pytest.approx(11.9e9, rel=0.01)
    _same(flux_to_diffusers(original), state)


@pytest.mark.parametrize(
    ("folder", "billions"), [("sd3", 8.06), ("sd35-medium", 2.24), ("sd3-medium", 2.03)]
)
def test_the_shipped_sd3_configs_have_the_published_sizes(folder: str, billions: float) -> None:
    config = SD3Transformer2DModel.load_config(model_configs_dir() / folder / "transformer")
    with init_empty_weights(include_buffers=True):  # no 1.5 GB position table
        model = SD3Transformer2DModel.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(billions * 1e9, rel=0.01)


def test_the_shipped_zimage_config_has_the_published_size() -> None:
    from diffusers import ZImageTransformer2DModel

    config = ZImageTransformer2DModel.load_config(model_configs_dir() / "zimage" / "transformer")
    with init_empty_weights(include_buffers=True):
        model = ZImageTransformer2DModel.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(6.15e9, rel=0.01)


def test_a_zimage_file_in_tongyi_layout_converts_back_with_diffusers_own_converter() -> None:
    from diffusers.loaders.single_file_utils import (
        convert_z_image_transformer_checkpoint_to_diffusers,
    )

    from tests.flow_checkpoint import zimage_to_original
    from tests.tiny_new_families import zimage_components

    state = zimage_components()["transformer"].state_dict()
    original = zimage_to_original(state, DIFFUSION_PREFIX)
    assert "model.diffusion_model.layers.0.attention.qkv.weight" in original
    _same(convert_z_image_transformer_checkpoint_to_diffusers(dict(original)), state)
