"""Qwen-Image from the files people download: ComfyUI's transformer (bf16, fp8, or a
city96 GGUF), the Qwen2.5-VL text encoder (with or without the vision tower, bf16 or
scaled fp8) and the Wan-layout VAE, each a separate file, loaded offline through the
engine and making the same pictures as the same tiny model from a diffusers folder; a
missing file is named in a sentence the window and the CLI act on. (GGUF with every
family's in test_transformer_files.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import WAIT, box_mask, picture, request
from model_helpers import Recorder, never
from safetensors.torch import load_file, save_file

from engine import component_files as cf
from engine import memory_policy
from engine.api import (
    EngineError,
    ErrorKind,
    Finished,
    ModelFamily,
)
from engine.worker import Engine
from tests.single_file_cases import load_error
from tests.tiny_qwen_files import DIFFUSION_PREFIX, write_qwen_files
from tests.tiny_qwen_files import folder_image as _from_folder
from tests.tiny_qwen_files import manager_for as _manager
from tests.tiny_qwen_files import picture_of as _image

pytestmark = pytest.mark.usefixtures("one_torch_thread", "no_network")

# A small job at Qwen-Image's own guidance (true CFG 4), its model set per test.
SMALL = request(steps=2, guidance_scale=4.0, seed=3, scheduler="Euler")


def test_the_three_comfyui_files_load_offline_and_draw_what_the_diffusers_folder_draws(
    tmp_path: Path,
) -> None:
    files, _ = write_qwen_files(tmp_path)
    progress = Recorder()
    model = _manager(files).get(str(files.transformer), progress, never)

    assert (model.family, model.variant, model.label) == (ModelFamily.QWEN_IMAGE, "", "Qwen-Image")
    assert type(model.pipe).__name__ == "QwenImagePipeline"
    stages = [s for s, _ in progress.events]
    assert stages[0] == f"reading {files.transformer.name}"
    assert any(s.startswith("memory: all on the device (model ") for s in stages)
    assert {"loading transformer", "loading text_encoder", "loading vae"} <= set(stages)
    # Never shown a picture, never asked for next-token logits: neither part is read.
    assert model.pipe.text_encoder.model.visual is None
    assert isinstance(model.pipe.text_encoder.lm_head, torch.nn.Identity)
    assert type(model.pipe.vae).__name__ == "AutoencoderKLQwenImage"
    np.testing.assert_array_equal(_image(model.pipe), _from_folder(files))


def test_a_comfyui_saved_transformer_and_an_encoder_without_vision_tower_draw_the_same(
    tmp_path: Path,
) -> None:
    files, _ = write_qwen_files(tmp_path, prefix=DIFFUSION_PREFIX, vision=False, lm_head=False)
    assert cf.inspect(files.text_encoders["qwen2.5-vl"]).kind == cf.QWEN25_VL
    model = _manager(files).get(str(files.transformer), Recorder(), never)
    np.testing.assert_array_equal(_image(model.pipe), _from_folder(files))


def test_an_fp8_transformer_stays_fp8_and_the_status_says_so(tmp_path: Path) -> None:
    files, _ = write_qwen_files(
        tmp_path, dtype=torch.float8_e4m3fn, name="qwen_image_fp8_e4m3fn.safetensors"
    )
    model = _manager(files, "bfloat16").get(str(files.transformer), Recorder(), never)

    assert model.notes[0] == "fp8 (e4m3fn)"
    block = model.pipe.transformer.transformer_blocks[0]
    assert block.attn.to_q.weight.dtype == torch.float8_e4m3fn
    assert block.img_mlp.net[2].weight.dtype == torch.float8_e4m3fn
    image = _image(model.pipe)
    assert np.isfinite(image).all()
    assert np.abs(image - _from_folder(files)).mean() < 0.05


def test_a_scaled_fp8_text_encoder_is_multiplied_out_and_draws_nearly_the_same(
    tmp_path: Path,
) -> None:
    files, pipe = write_qwen_files(tmp_path, scaled_encoder=True)
    encoder_file = files.text_encoders["qwen2.5-vl"]
    assert cf.inspect(encoder_file).kind == cf.QWEN25_VL
    model = _manager(files).get(str(files.transformer), Recorder(), never)

    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    loaded = model.pipe.text_encoder.state_dict()[name]
    original = pipe.text_encoder.state_dict()[name]
    # e4m3 keeps 3 mantissa bits: within 1/16 of the largest weight, not 448 times off.
    assert (loaded - original).abs().max() <= original.abs().max() / 16
    assert np.abs(_image(model.pipe) - _from_folder(files)).mean() < 0.05


def test_every_mode_from_the_single_files_equals_the_diffusers_folder_through_the_engine(
    tmp_path: Path,
) -> None:
    files, _ = write_qwen_files(tmp_path)
    modes: dict[str, dict[str, object]] = {
        "txt2img": {},
        "img2img": {"init_image": picture(), "strength": 0.7},
        "inpaint": {"init_image": picture(), "mask": box_mask(), "strength": 0.9, "mask_blur": 0},
    }
    base = SMALL
    engine = Engine(_manager(files))
    results: dict[tuple[str, str], np.ndarray] = {}
    try:
        for source in (files.transformer, files.diffusers_folder):
            for mode, changes in modes.items():
                request = base.with_changes(model=str(source), **changes)
                ended = engine.wait(engine.submit(request), WAIT)
                assert isinstance(ended, Finished), (source.name, mode, ended)
                results[source.name, mode] = np.asarray(ended.images[0].convert("RGB"))
    finally:
        engine.shutdown(10)
    for mode in modes:
        single = results[files.transformer.name, mode]
        np.testing.assert_array_equal(single, results[files.diffusers_folder.name, mode])
    outside = np.asarray(box_mask()) <= 127
    inpainted = results[files.transformer.name, "inpaint"]
    np.testing.assert_array_equal(inpainted[outside], np.asarray(picture())[outside])


def test_a_missing_text_encoder_is_named_and_loads_once_chosen(tmp_path: Path) -> None:
    files, _ = write_qwen_files(tmp_path)
    elsewhere = tmp_path / "downloads" / "qwen_2.5_vl_7b_fp8_scaled.safetensors"
    elsewhere.parent.mkdir()
    shutil.move(files.text_encoders["qwen2.5-vl"], elsewhere)
    manager = _manager(files)

    message = load_error(manager, files.transformer)
    assert message.startswith(
        "Qwen-Image needs the Qwen2.5-VL text encoder (qwen_2.5_vl_7b_fp8_scaled.safetensors) "
        f"beside {files.transformer.name}, {cf.MISSING_FILE_MARK} "  # the window's cue
    )
    assert str(files.models / "text_encoders") in message and "--text-encoder" in message

    # Chosen by hand (the CLI's --text-encoder, the window's Choose file…), it loads.
    model = manager.get(str(files.transformer), Recorder(), never, files=[str(elsewhere)])
    np.testing.assert_array_equal(_image(model.pipe), _from_folder(files))


def _flux_style_vae(path: Path) -> Path:
    """A 16-channel 2-D VAE file (FLUX.1's ae.safetensors layout): same width, other kind."""
    save_file(
        {
            "encoder.conv_out.weight": torch.zeros(32, 8, 3, 3),
            "decoder.conv_in.weight": torch.zeros(8, 16, 3, 3),
        },
        path,
    )
    return path


def test_a_missing_vae_is_named_and_a_flux_vae_beside_it_is_not_taken(tmp_path: Path) -> None:
    files, _ = write_qwen_files(tmp_path)
    elsewhere = tmp_path / "downloads" / files.vae.name
    elsewhere.parent.mkdir()
    shutil.move(files.vae, elsewhere)
    _flux_style_vae(files.models / "vae" / "ae.safetensors")
    manager = _manager(files)

    message = load_error(manager, files.transformer)
    assert message.startswith(
        f"Qwen-Image needs its VAE (qwen_image_vae.safetensors) beside {files.transformer.name}"
    )
    assert "--vae" in message and "--text-encoder" not in message

    model = manager.get(str(files.transformer), Recorder(), never, files=[str(elsewhere)])
    np.testing.assert_array_equal(_image(model.pipe), _from_folder(files))


def test_the_cli_takes_the_text_encoder_and_vae_from_its_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine import cli

    files, _ = write_qwen_files(tmp_path)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    encoder = shutil.move(files.text_encoders["qwen2.5-vl"], downloads)
    vae = shutil.move(files.vae, downloads)
    out = tmp_path / "out.png"
    argv = ["generate", "--prompt", "a red circle", "--model", str(files.transformer)]
    # No --scheduler: the file's names tell the family, whose sampler is Euler.
    argv += ["--steps", "2", "--width", "32", "--height", "32", "--device", "cpu"]
    argv += ["--output", str(out), "--quiet"]

    assert cli.main(argv, models=_manager(files)) == 1
    assert "Qwen2.5-VL text encoder" in capsys.readouterr().err
    assert not out.exists()

    argv += ["--text-encoder", str(encoder), "--vae", str(vae)]
    assert cli.main(argv, models=_manager(files)) == 0, capsys.readouterr().err
    assert out.is_file()
    from engine.metadata import read_parameters

    assert read_parameters(out).scheduler == "Euler"


@pytest.mark.parametrize(
    ("name", "extra", "says"),
    [
        ("qwen_image_edit_2509_fp8_e4m3fn.safetensors", {}, "is Qwen-Image-Edit, an editing"),
        ("qwen_image_layered_bf16.safetensors", {}, "is Qwen-Image-Layered"),
        ("qwen_image_2.1.safetensors", {"txt_in.text_norm.weight": (16,)}, "Qwen-Image 2.1"),
    ],
    ids=["edit", "layered", "2.1"],
)
def test_other_qwen_transformers_are_refused_in_one_sentence(
    tmp_path: Path, name: str, extra: dict[str, tuple[int, ...]], says: str
) -> None:
    files, _ = write_qwen_files(tmp_path, name=name)
    if extra:
        state = load_file(files.transformer) | {k: torch.ones(s) for k, s in extra.items()}
        save_file(state, files.transformer)
    message = load_error(_manager(files), files.transformer)
    assert says in message and "use Qwen-Image" in message
    assert message.count(". ") == 0  # one sentence


def test_a_qwen_image_too_big_for_memory_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, _ = write_qwen_files(tmp_path)
    monkeypatch.setattr(memory_policy, "system_free", lambda: 1000)
    progress = Recorder()
    with pytest.raises(EngineError) as caught:
        _manager(files).get(str(files.transformer), progress, never)
    assert caught.value.kind == ErrorKind.OUT_OF_MEMORY
    assert "Qwen-Image (qwen_image_tiny.safetensors) needs about" in caught.value.message
    assert not any(s.startswith("loading") for s, _ in progress.events)


def test_a_vae_override_takes_a_qwen_vae_and_refuses_an_sd_style_one(tmp_path: Path) -> None:
    files, _ = write_qwen_files(tmp_path)
    flux_vae = _flux_style_vae(tmp_path / "ae.safetensors")
    base = SMALL.with_changes(model=str(files.transformer))
    engine = Engine(_manager(files))
    try:
        own = engine.wait(engine.submit(base), WAIT)
        same = engine.wait(engine.submit(base.with_changes(vae=str(files.vae))), WAIT)
        wrong = engine.wait(engine.submit(base.with_changes(vae=str(flux_vae))), WAIT)
    finally:
        engine.shutdown(10)
    assert isinstance(own, Finished) and isinstance(same, Finished), (own, same)
    np.testing.assert_array_equal(np.asarray(same.images[0]), np.asarray(own.images[0]))
    assert not isinstance(wrong, Finished)
    assert wrong.error == ErrorKind.BAD_INPUT  # type: ignore[union-attr]
    assert wrong.message.startswith(  # type: ignore[union-attr]
        "The VAE ae.safetensors is not a Qwen-Image VAE (Wan 2.1's layout)"
    )


@pytest.mark.parametrize("layout", ["wan", "diffusers"])
def test_a_wan_vae_is_told_from_a_flux_vae_of_the_same_width(tmp_path: Path, layout: str) -> None:
    from tests.tiny_qwen_files import tiny_qwen_image_pipeline, wan_vae_to_original

    state = tiny_qwen_image_pipeline().vae.state_dict()
    if layout == "wan":
        state = wan_vae_to_original(state)
    wan = tmp_path / "qwen_image_vae.safetensors"
    save_file({f"first_stage_model.{k}": v.contiguous() for k, v in state.items()}, wan)
    found = cf.inspect(wan)
    assert (found.kind, found.width, found.prefix) == (cf.WAN_VAE, 16, "first_stage_model.")
    flux = cf.inspect(_flux_style_vae(tmp_path / "ae.safetensors"))
    assert (flux.kind, flux.width) == (cf.VAE, 16)
    assert cf.choose(cf.Slot("vae", cf.VAE, "ae", "its VAE"), 16, [found]) is None


def test_a_video_vae_keeps_its_layout_where_channels_last_is_chosen() -> None:
    from engine import devices

    policy = devices.resolve("cpu", "bfloat16")
    assert policy.channels_last
    conv3d, conv2d = torch.nn.Conv3d(2, 2, 1), torch.nn.Conv2d(2, 2, 1)
    devices.apply_layout(policy, torch.nn.Sequential(conv3d, torch.nn.Conv2d(2, 2, 1)), conv2d)
    assert conv3d.weight.is_contiguous()
    assert conv2d.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_shipped_qwen_image_configs_have_the_published_sizes() -> None:
    """Built on the meta device from engine/model_configs/qwen_image: a 20.4B transformer,
    Qwen2.5-VL-7B's 8.29B, Wan 2.1's 127M VAE; the full-size files' names are recognised."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    from engine import qwen_files
    from tests.tiny_qwen_files import (
        shipped_qwen_image,
        text_encoder_to_original,
        wan_vae_to_original,
    )

    transformer, vae, encoder = shipped_qwen_image()

    def size(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert (size(transformer), size(encoder), size(vae)) == (
        20_430_401_088,
        8_292_166_656,
        126_892_531,
    )
    assert qwen_files.is_qwen_image(list(transformer.state_dict()))
    original = wan_vae_to_original(vae.state_dict())
    assert set(convert_wan_vae_to_diffusers(original)) == set(vae.state_dict())
    names = text_encoder_to_original(encoder.state_dict())
    mapped = qwen_files.text_encoder_state(names)
    assert set(mapped) == {k for k in encoder.state_dict() if k.startswith("model.language_model.")}


def test_a_scaled_fp8_transformer_is_multiplied_out_and_counted_at_full_size(
    tmp_path: Path,
) -> None:
    from engine import quantized
    from tests.tiny_qwen_files import scaled_fp8

    files, _ = write_qwen_files(tmp_path, name="qwen_image_fp8_scaled.safetensors")
    plain = shutil.copy(files.transformer, tmp_path / "plain.safetensors")
    save_file(scaled_fp8(load_file(files.transformer)), files.transformer)

    header = quantized.read_header(files.transformer)
    assert (header.quantization, header.storage_dtype) == (
        "fp8 (e4m3fn), scaled: run unpacked",
        None,
    )
    at_bf16 = memory_policy.file_bytes_at(files.transformer, torch.bfloat16)
    assert at_bf16 >= memory_policy.file_bytes_at(plain, torch.bfloat16)
    model = _manager(files, "bfloat16").get(str(files.transformer), Recorder(), never)
    assert model.notes[0] == "fp8 (e4m3fn), scaled: run unpacked"
    assert model.pipe.transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.bfloat16
    assert np.abs(_image(model.pipe) - _from_folder(files)).mean() < 0.05


def test_the_model_library_lists_qwen_image_files_by_what_they_hold(tmp_path: Path) -> None:
    from library_files import write_safetensors

    from engine.library import ModelLibrary

    models = tmp_path / "ComfyUI" / "models"
    # An fp8 file's norms and modulations come last in its header; the scan still sees them.
    filler = {f"transformer_blocks.{i}.attn.to_q.weight": [8, 8] for i in range(500)}
    transformer = filler | {"txt_norm.weight": [8], "transformer_blocks.0.img_mod.1.weight": [8, 8]}
    write_safetensors(models / "diffusion_models" / "qwen_image_fp8.safetensors", transformer)
    vae = {"encoder.conv1.weight": [8, 3, 3, 3, 3], "encoder.downsamples.0.residual.0.gamma": [8]}
    write_safetensors(models / "vae" / "qwen_image_vae.safetensors", vae)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(models)
    library.scan()
    found = {e.name: (e.kind, e.family) for e in library.entries()}
    assert found == {
        "qwen_image_fp8": ("checkpoint", "qwen_image"),
        "qwen_image_vae": ("vae", ""),
    }


@pytest.mark.parametrize(
    ("fp8", "gpu_gib", "placement"),
    [
        (False, 80, memory_policy.Placement.ON_DEVICE),
        (False, 24, memory_policy.Placement.GROUP_OFFLOAD),
        (True, 24, memory_policy.Placement.MODEL_OFFLOAD),
    ],
    ids=["bf16-80GB", "bf16-24GB", "fp8-24GB"],
)
def test_full_size_files_are_found_and_placed_on_a_gpu_from_their_headers_alone(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fp8: bool,
    gpu_gib: int,
    placement: memory_policy.Placement,
) -> None:
    """The shipped configs against files in the real names and shapes (headers only, no
    weights): the encoder and VAE are found by width, and the placement is chosen from the
    real sizes before anything loads (a CUDA device's free memory mocked)."""
    from engine import flow_single_file
    from engine.resources import model_configs_dir
    from tests.tiny_qwen_files import write_full_size_headers

    transformer, encoder, vae = write_full_size_headers(
        tmp_path / "ComfyUI" / "models", fp8_transformer=fp8, scaled_encoder=True
    )
    gib = memory_policy.GIB
    monkeypatch.setattr(memory_policy, "device_free", lambda device: gpu_gib * gib)
    monkeypatch.setattr(memory_policy, "system_free", lambda: 128 * gib)
    load = flow_single_file.prepare(
        transformer, model_configs_dir(), torch.bfloat16, torch.device("cuda"), never, roots=[]
    )

    assert (load.family, load.variant) == (ModelFamily.QWEN_IMAGE, "")
    assert load.chosen.files["text_encoder"].path == encoder
    assert load.chosen.files["vae"].path == vae
    # The 20.4B transformer at 2 bytes a weight (fp8: 1, its biases and norms 2), the
    # largest part by far; the scaled fp8 encoder is counted as what it becomes, bfloat16.
    expected = 20_430_401_088 * (1 if fp8 else 2)
    assert load.memory.largest_bytes == pytest.approx(expected, rel=0.001)
    # The encoder's language model at 2 bytes (its vision tower and lm_head are not read),
    # the VAE at 2.
    encoder_bytes = (8_292_166_656 - 676_550_144 - 544_997_376) * 2
    rest = load.memory.model_bytes - load.memory.largest_bytes
    assert rest == pytest.approx(encoder_bytes + 126_892_531 * 2, rel=0.001)
    assert load.memory.placement is placement
    notes = (("fp8 (e4m3fn)",) if fp8 else ()) + (
        () if placement is memory_policy.Placement.ON_DEVICE else (load.memory.label,)
    )
    assert load.notes == notes
    if placement is not memory_policy.Placement.ON_DEVICE:
        assert load.memory.label.startswith(f"{placement} (model ")
        assert load.memory.label.endswith(f"GPU {gpu_gib}.0 GB free)")


def test_files_that_are_not_qwen_image_or_not_readable_describe_no_family(
    tmp_path: Path,
) -> None:
    from engine.file_family import file_family

    junk = {
        "old.ckpt": b"PK\x03\x04" + b"\0" * 40,
        "cut.safetensors": b"\xff" * 20,
        "cut.gguf": b"GGUF\x03\x00",
        "empty.safetensors": b"",
    }
    for name, data in junk.items():
        (tmp_path / name).write_bytes(data)
        assert file_family(tmp_path / name) is None, name
    flux_vae = _flux_style_vae(tmp_path / "ae.safetensors")
    assert file_family(flux_vae) is None
    assert file_family(tmp_path / "missing.safetensors") is None


def test_a_file_named_by_hand_that_is_no_encoder_or_vae_is_refused_in_a_sentence(
    tmp_path: Path,
) -> None:
    files, _ = write_qwen_files(tmp_path)
    gguf_encoder = tmp_path / "Qwen2.5-VL-7B-Instruct-Q8_0.gguf"
    gguf_encoder.write_bytes(b"GGUF\x03\x00\x00\x00")
    given = {"files": [str(gguf_encoder)]}
    message = load_error(_manager(files), files.transformer, ErrorKind.BAD_INPUT, **given)
    assert message == (
        "Qwen2.5-VL-7B-Instruct-Q8_0.gguf is not a text encoder or VAE that DiffusionDesk can "
        "read; give the .safetensors file of one (or a T5, Qwen3 or Gemma 2 GGUF encoder)."
    )
