"""SANA and SANA-Sprint from the files people download: the transformer in NVIDIA's layout
(.safetensors, ComfyUI's prefixed keys, the .pth pickle with consent, GGUF), Gemma 2 and
DC-AE as separate files, loaded offline through the engine with the same pixels as the
same tiny model's diffusers folder; real-size headers told apart and matched to the
shipped configs; a missing encoder or autoencoder named. (GGUF, and a file through the engine,
with every family's in test_transformer_files.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from model_helpers import Recorder, never

from engine import component_files as cf
from engine import sana_files
from engine.api import EngineError, ErrorKind, ModelFamily
from engine.resources import model_configs_dir
from tests.single_file_cases import assert_same_pixels, cpu_manager, load_error
from tests.tiny_sana_files import (
    dc_ae_to_original,
    sana_image,
    sana_to_original,
    write_sana_files,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "no_network")


@pytest.mark.parametrize(
    ("sprint", "prefix"),
    [(False, ""), (True, sana_files.PREFIX)],
    ids=["sana", "sprint-comfyui-prefix"],
)
def test_a_sana_file_gives_the_same_pixels_as_the_same_model_from_a_diffusers_folder(
    tmp_path: Path, sprint: bool, prefix: str
) -> None:
    files, _ = write_sana_files(tmp_path, sprint=sprint, prefix=prefix)
    manager = cpu_manager(files.config_root)
    progress = Recorder()
    model = manager.get(str(files.transformer), progress, never)

    assert (model.family, model.variant) == (ModelFamily.SANA, "sprint" if sprint else "")
    assert model.label == ("SANA-Sprint" if sprint else "SANA")
    assert type(model.pipe).__name__ == ("SanaSprintPipeline" if sprint else "SanaPipeline")
    stages = [s for s, _ in progress.events]
    assert {
        "loading transformer",
        "loading text_encoder",
        "loading tokenizer",
        "loading vae",
    } <= set(stages)
    from_file = sana_image(model.pipe)
    from_folder = sana_image(manager.get(str(files.diffusers_folder), Recorder(), never).pipe)
    assert_same_pixels(from_file, from_folder)


def test_a_transformer_and_dc_ae_in_diffusers_layout_load_too(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    files, reference = write_sana_files(tmp_path, sprint=True)
    for module, path in ((reference.transformer, files.transformer), (reference.vae, files.vae)):  # type: ignore[attr-defined]
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, path)
    model = cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)
    assert (model.family, model.variant) == (ModelFamily.SANA, "sprint")
    assert_same_pixels(sana_image(model.pipe), sana_image(reference))


def test_a_pth_file_is_refused_without_consent_and_read_as_weights_with_it(
    tmp_path: Path,
) -> None:
    files, reference = write_sana_files(tmp_path, suffix=".pth")
    with pytest.raises(EngineError) as refused:
        cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)
    assert refused.value.kind == ErrorKind.MODEL
    assert "pickle" in refused.value.message and "--allow-pickle" in refused.value.message

    model = cpu_manager(files.config_root, allow_pickle=True).get(
        str(files.transformer), Recorder(), never
    )
    assert model.family == ModelFamily.SANA
    assert_same_pixels(sana_image(model.pipe), sana_image(reference))


def test_a_missing_gemma_encoder_is_named_and_can_be_chosen_by_hand(tmp_path: Path) -> None:
    files, reference = write_sana_files(tmp_path)
    elsewhere = tmp_path / "downloads" / files.text_encoders["gemma"].name
    elsewhere.parent.mkdir()
    shutil.move(files.text_encoders["gemma"], elsewhere)
    manager = cpu_manager(files.config_root)

    message = load_error(manager, files.transformer)
    assert message.startswith("SANA needs the Gemma 2 2B text encoder (gemma_2_2b_it.safetensors")
    assert cf.MISSING_FILE_MARK in message  # the window's Choose file… keys on it
    assert str(files.models / "text_encoders") in message and "--text-encoder" in message

    model = manager.get(str(files.transformer), Recorder(), never, files=[str(elsewhere)])
    assert_same_pixels(sana_image(model.pipe), sana_image(reference))


def test_a_missing_dc_ae_is_named_and_the_cli_vae_option_supplies_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.addons.apply
    import engine.models
    from engine import cli

    files, _ = write_sana_files(tmp_path)
    elsewhere = tmp_path / "downloads" / files.vae.name
    elsewhere.parent.mkdir()
    shutil.move(files.vae, elsewhere)
    for module in (engine.models, engine.addons.apply):  # the tiny configs
        monkeypatch.setattr(module, "model_configs_dir", lambda: files.config_root)
    capsys.readouterr()  # what writing the files printed
    out = tmp_path / "out.png"
    args = ["generate", "--prompt", "a red circle", "--model", str(files.transformer)]
    args += ["--device", "cpu", "--dtype", "float32", "--steps", "2"]
    args += ["--width", "64", "--height", "64", "--output", str(out), "--quiet"]

    assert cli.main(args) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0  # one line
    assert "SANA needs its DC-AE autoencoder (dc-ae-f32c32-sana-1.1.safetensors" in err
    assert "--vae" in err and not out.exists()

    assert cli.main([*args, "--vae", str(elsewhere)]) == 0, capsys.readouterr().err
    assert out.is_file()


def test_an_fp8_sana_file_stays_fp8_and_runs_in_the_compute_precision(tmp_path: Path) -> None:
    files, reference = write_sana_files(tmp_path, sprint=True, dtype=torch.float8_e4m3fn)
    model = cpu_manager(files.config_root, dtype="bfloat16").get(
        str(files.transformer), Recorder(), never
    )
    assert model.notes[0] == "fp8 (e4m3fn)"
    block = model.pipe.transformer.transformer_blocks[0]
    assert block.attn1.to_q.weight.dtype == torch.float8_e4m3fn
    assert block.ff.conv_inverted.weight.dtype == torch.float8_e4m3fn
    assert block.scale_shift_table.dtype == torch.bfloat16  # read directly: cast up once
    image = sana_image(model.pipe)
    assert np.isfinite(image).all()
    assert np.abs(image - sana_image(reference)).mean() < 0.05


# ------------------------------------------------------------------ real-size headers


def _real_size_header(folder: str) -> dict[str, list[int]]:
    """The names and shapes of a published model's file in NVIDIA's layout, built from
    the shipped config on the meta device (no weights)."""
    from diffusers import SanaTransformer2DModel

    config = SanaTransformer2DModel.load_config(model_configs_dir() / folder / "transformer")
    with init_empty_weights(include_buffers=True):  # no 4K positional table
        model = SanaTransformer2DModel.from_config(config)
    original = sana_to_original(model.state_dict(), sample_size=int(config["sample_size"]))
    return {k: list(v.shape) for k, v in original.items()}


@pytest.mark.parametrize(
    ("folder", "file_name", "billions"),
    [
        ("sana", "Sana_1600M_1024px_BF16.safetensors", 1.60),
        ("sana-600m", "Sana_600M_1024px_MultiLing.pth", 0.59),
        ("sana-2k", "Sana_1600M_2Kpx_BF16.pth", 1.60),
        ("sana-4k", "Sana_1600M_4Kpx_BF16.pth", 1.60),
        ("sana15", "SANA1.5_1.6B_1024px.pth", 1.60),
        ("sana15-4.8b", "SANA1.5_4.8B_1024px.pth", 4.72),
        ("sana-sprint", "Sana_Sprint_1.6B_1024px.pth", 1.61),
        ("sana-sprint-600m", "Sana_Sprint_0.6B_1024px.pth", 0.59),
    ],
)
def test_each_published_sana_file_is_matched_to_its_shipped_config(
    folder: str, file_name: str, billions: float
) -> None:
    from diffusers import SanaTransformer2DModel

    header = _real_size_header(folder)
    shape = sana_files.describe(header, file_name)
    assert sana_files.config_folder(shape) == folder
    config = SanaTransformer2DModel.load_config(model_configs_dir() / folder / "transformer")
    assert sana_files.mismatch(shape, config, file_name) is None
    with init_empty_weights(include_buffers=True):  # no 4K positional table
        model = SanaTransformer2DModel.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(billions * 1e9, rel=0.01)


def test_the_resolution_comes_from_the_name_or_the_stored_positional_embedding() -> None:
    header = _real_size_header("sana-4k")  # pos_embed of 128 x 128 patches
    assert sana_files.describe(header, "renamed.safetensors").resolution == 4096
    assert sana_files.describe(header, "Sana_1600M_2Kpx_BF16.pth").resolution == 2048
    del header["pos_embed"]
    assert sana_files.describe(header, "renamed.safetensors").resolution == 1024


def test_a_sana_size_without_a_config_is_refused_in_one_sentence(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    files, _ = write_sana_files(tmp_path)
    from safetensors.torch import load_file

    state = load_file(files.transformer)
    extra = {
        k.replace("blocks.1.", "blocks.2."): v.clone()
        for k, v in state.items()
        if k.startswith("blocks.1.")
    }
    save_file(state | extra, files.transformer)  # three blocks; the config says two
    message = load_error(cpu_manager(files.config_root), files.transformer)
    assert "is a SANA transformer with 3 blocks of width 8, a size DiffusionDesk has no" in (
        message
    )


def test_the_shipped_gemma_and_dc_ae_configs_have_the_published_sizes() -> None:
    from diffusers import AutoencoderDC
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config.from_pretrained(model_configs_dir() / "sana" / "text_encoder")
    with init_empty_weights():
        gemma = Gemma2Model(config)
    assert sum(p.numel() for p in gemma.parameters()) == pytest.approx(2.614e9, rel=0.01)
    vae_config = AutoencoderDC.load_config(model_configs_dir() / "sana" / "vae")
    with init_empty_weights():
        vae = AutoencoderDC.from_config(vae_config)
    assert vae.config.latent_channels == 32
    assert sum(p.numel() for p in vae.parameters()) == pytest.approx(312.25e6, rel=0.01)


def test_dc_ae_files_are_told_from_their_keys_in_both_layouts(tmp_path: Path) -> None:
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors.torch import save_file

    from tests.tiny_new_families import sana_components

    state = sana_components()["vae"].state_dict()
    original = dc_ae_to_original(state)
    assert infer_diffusers_model_type(original) == "autoencoder-dc-f32c32-sana"
    for name, weights in (("original", original), ("diffusers", state)):
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in weights.items()}, path)
        found = cf.inspect(path)
        assert (found.kind, found.width, found.prefix) == ("vae", 4, ""), name


@pytest.mark.parametrize("prefix", ["", sana_files.PREFIX], ids=["bare", "comfyui-prefix"])
def test_the_model_library_lists_sana_files_as_a_sana_model_and_a_vae(
    tmp_path: Path, prefix: str
) -> None:
    from engine.library import inspect_file

    files, _ = write_sana_files(tmp_path, prefix=prefix)
    for path, kind, family in ((files.transformer, "checkpoint", "sana"), (files.vae, "vae", "")):
        entry = inspect_file(str(path), None, str(files.models), path.stat())
        assert (entry.kind, entry.family) == (kind, family), path.name


@pytest.mark.parametrize(
    ("folder", "variant", "size"),
    [
        ("sana", "", 1024),
        ("sana-2k", "2k", 2048),
        ("sana-4k", "4k", 2048),
        ("sana-sprint", "sprint", 1024),
    ],
)
def test_the_2k_and_4k_models_start_at_2048_pixels(folder: str, variant: str, size: int) -> None:
    import json

    from engine import families
    from engine.families.profile import FolderFacts

    root = model_configs_dir()
    own_index = root / folder / "model_index.json"
    index = json.loads(
        (own_index if own_index.is_file() else root / "sana" / "model_index.json").read_text()
    )
    transformer = json.loads((root / folder / "transformer" / "config.json").read_text())
    profile, found = families.detect(
        FolderFacts(index, {"transformer": transformer}, name="x"), "x"
    )
    assert (profile.family, found) == (ModelFamily.SANA, variant)
    assert (profile.variant(found).width, profile.variant(found).height) == (size, size)


def test_the_cli_runs_a_sprint_file_with_sprints_own_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.addons.apply
    import engine.models
    from engine import cli
    from engine.metadata import read_texts

    files, _ = write_sana_files(tmp_path, sprint=True)
    for module in (engine.models, engine.addons.apply):  # the tiny configs
        monkeypatch.setattr(module, "model_configs_dir", lambda: files.config_root)
    out = tmp_path / "out.png"
    args = ["generate", "--prompt", "a red circle", "--model", str(files.transformer)]
    args += ["--device", "cpu", "--dtype", "float32", "--width", "64", "--height", "64"]
    assert cli.main([*args, "--seed", "7", "--output", str(out), "--quiet"]) == 0
    parameters = read_texts(out)["parameters"]
    assert "Steps: 2," in parameters and "Sampler: sCM," in parameters
    assert "Negative prompt" not in parameters
