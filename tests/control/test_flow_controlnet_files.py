"""SD 3 and FLUX.1 ControlNets from a single .safetensors file: in diffusers' tensor names
(as InstantX, Shakker-Labs and Alimama publish them) and, for FLUX, in XLabs' layout (Black
Forest Labs' names, an input hint block). The config is read from the shapes and the
picture equals the one from the same ControlNet's diffusers folder; several file units
run together; a broken XLabs file and a file that is no ControlNet are refused in one
sentence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from control_helpers import cpu_engine, euler_request, flow_controlnet
from diffusers import (
    FluxControlNetModel,
    SD3ControlNetModel,
)
from flow_checkpoint import flux_to_original
from PIL import Image
from safetensors.torch import save_file
from tiny_flow_models import save_flow_model, tiny_sd3_pipeline

from engine.api import ControlUnit, Failed, Finished, GenerationRequest
from engine.control import flow_files

pytestmark = pytest.mark.slow  # two families' models and ControlNets are built and loaded

SIZE = 32


def _acting(net: torch.nn.Module) -> None:
    """from_transformer zeroes the residual layers; random ones make the unit act."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, torch.nn.Linear) and "controlnet" in name:
                torch.nn.init.normal_(module.weight, std=0.3)
            if isinstance(module, torch.nn.Conv2d) and name.startswith("input_hint_block"):
                torch.nn.init.normal_(module.weight, std=0.3)  # its last one starts at zero
        for param in net.pos_embed_input.parameters() if hasattr(net, "pos_embed_input") else ():
            torch.nn.init.normal_(param, std=0.3)


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    """family -> (model folder, ControlNet folder, the same ControlNet as one file)."""
    root = tmp_path_factory.mktemp("flow-cn-files")
    out = {}
    for family in ("sd3", "flux1"):
        if family == "sd3":  # two layers: SD 3 adds no residual to its last (text-only) block
            folder = root / family
            tiny_sd3_pipeline(root / "build", layers=2).save_pretrained(folder)
        else:
            folder = save_flow_model(root / family, family)
        net = flow_controlnet(folder, family)
        _acting(net)
        net.save_pretrained(root / f"cn-{family}")
        single = root / f"{family}-controlnet-canny.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(single))
        out[family] = (folder, root / f"cn-{family}", single)
    return out


@pytest.fixture(scope="module")
def engine():
    yield from cpu_engine()


def _control() -> Image.Image:
    return Image.fromarray(np.random.default_rng(5).integers(0, 256, (SIZE, SIZE, 3), np.uint8))


def _request(model: Path, **changes) -> GenerationRequest:
    return euler_request(model, seed=2, size=SIZE, **changes)


@pytest.mark.parametrize("family", ["sd3", "flux1"])
def test_a_single_file_controlnet_paints_what_its_folder_paints(engine, flow, family):
    model, folder, single = flow[family]
    plain = engine.generate(_request(model), 600)
    by_folder = engine.generate(
        _request(model, controls=(ControlUnit(str(folder), _control()),)), 600
    )
    by_file = engine.generate(
        _request(model, controls=(ControlUnit(str(single), _control()),)), 600
    )
    for result in (plain, by_folder, by_file):
        assert isinstance(result, Finished), result
    folder_pixels = np.asarray(by_folder.images[0])
    np.testing.assert_array_equal(np.asarray(by_file.images[0]), folder_pixels)
    assert not np.array_equal(np.asarray(plain.images[0]), folder_pixels)


@pytest.mark.parametrize("family", ["sd3", "flux1"])
def test_the_config_read_from_the_shapes_equals_the_folders(flow, family):
    _, folder, single = flow[family]
    cls = FluxControlNetModel if family == "flux1" else SD3ControlNetModel
    saved = cls.load_config(str(folder))
    transformer = cls.load_config(str(flow[family][0] / "transformer"))
    loaded = flow_files.load(single, torch.float32, transformer)
    for key, value in loaded.config.items():
        if key.startswith("_") or key not in saved:
            continue
        expected = saved[key]
        if isinstance(value, (list, tuple)):
            value, expected = list(value), list(expected)
        assert value == expected, key


def test_two_flux_units_from_files_run_together(engine, flow):
    model, _, single = flow["flux1"]
    units = (ControlUnit(str(single), _control(), weight=0.6),
             ControlUnit(str(single), _control(), weight=0.4, preprocessor="canny"))  # fmt: skip
    result = engine.generate(_request(model, controls=units), 600)
    assert isinstance(result, Finished), result


def _xlabs_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FluxControlNetModel state dict (with an input hint block) in XLabs' layout."""
    hint = {"conv_in": 0, "conv_out": 14, **{f"blocks.{i}": 2 + 2 * i for i in range(6)}}
    out: dict[str, torch.Tensor] = {}
    rest = dict(state)
    for key in list(rest):
        if key.startswith("controlnet_blocks."):
            out[key] = rest.pop(key)
        elif key.startswith("controlnet_x_embedder."):
            out["pos_embed_input." + key.split(".", 1)[1]] = rest.pop(key)
        elif key.startswith("input_hint_block."):
            name, part = key.removeprefix("input_hint_block.").rsplit(".", 1)
            out[f"input_hint_block.{hint[name]}.{part}"] = rest.pop(key)
    width = rest["x_embedder.weight"].shape[0]
    # flux_to_original writes a whole transformer: give it the last layer XLabs lacks.
    rest |= {"proj_out.weight": torch.zeros(4, width),
             "norm_out.linear.weight": torch.zeros(2, width),
             "norm_out.linear.bias": torch.zeros(2)}  # fmt: skip
    bfl = flux_to_original(rest)
    return out | {k: v for k, v in bfl.items() if not k.startswith("final_layer.")}


def test_an_xlabs_flux_controlnet_file_paints_what_its_diffusers_form_paints(
    engine, flow, tmp_path
):
    model = flow["flux1"][0]
    net = flow_controlnet(model, "flux1", single_layers=0)
    config = {k: v for k, v in net.config.items() if not k.startswith("_")}
    config |= {"conditioning_embedding_channels": 16, "patch_size": 2}  # 16 x 2 x 2 = 64 in
    net = FluxControlNetModel.from_config(config)  # XLabs': a hint block, no single blocks
    assert net.input_hint_block is not None
    _acting(net)
    net.save_pretrained(tmp_path / "xlabs-diffusers")
    xlabs = tmp_path / "flux-canny-controlnet-v3.safetensors"
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(_xlabs_layout(state), str(xlabs))
    by_folder = engine.generate(
        _request(model, controls=(ControlUnit(str(tmp_path / "xlabs-diffusers"), _control()),)), 600
    )
    by_file = engine.generate(_request(model, controls=(ControlUnit(str(xlabs), _control()),)), 600)
    plain = engine.generate(_request(model), 600)
    for result in (by_folder, by_file, plain):
        assert isinstance(result, Finished), result
    folder_pixels = np.asarray(by_folder.images[0])
    np.testing.assert_array_equal(np.asarray(by_file.images[0]), folder_pixels)
    assert not np.array_equal(np.asarray(plain.images[0]), folder_pixels)


def test_a_broken_xlabs_file_and_a_file_of_another_kind_are_refused(engine, flow, tmp_path):
    model = flow["flux1"][0]
    xlabs = tmp_path / "flux-canny-controlnet-v3.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(6, 2),
               "controlnet_blocks.0.weight": torch.zeros(2, 2)}, str(xlabs))  # fmt: skip
    other = tmp_path / "not-a-controlnet.safetensors"
    save_file({"something.weight": torch.zeros(2, 2)}, str(other))
    for path, words in ((xlabs, "not a readable ControlNet file"), (other, "not a ControlNet")):
        result = engine.generate(
            _request(model, controls=(ControlUnit(str(path), _control()),)), 600
        )
        assert isinstance(result, Failed), result
        assert words in result.message and len(result.message.splitlines()) == 1
