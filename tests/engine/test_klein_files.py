"""FLUX.2 klein from the files people download: BFL's transformer file (bf16, fp8, scaled
fp8, GGUF), ComfyUI's Qwen3 text encoder and the FLUX.2 VAE as separate files, loaded
offline; the same pixels as the diffusers pipeline they came from and as the same tiny
model saved as a diffusers folder; 4B, 9B, distilled and base told apart; a missing or
wrong file named."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import WAIT, box_mask, picture
from engine_helpers import Recorder as Events
from model_helpers import Recorder, never
from safetensors.torch import load_file, save_file

from engine import flux2_files
from engine.api import (
    EngineError,
    ErrorKind,
    Finished,
    GenerationRequest,
    ModelFamily,
    Started,
    Step,
)
from engine.models import ModelManager
from engine.resources import model_configs_dir
from tests.tiny_flow_files import write_gguf
from tests.tiny_klein_files import flux2_to_original, write_klein_files

pytestmark = pytest.mark.usefixtures("one_torch_thread", "no_network")

SETTINGS = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}


def _image(pipe: object, **extra: object) -> np.ndarray:
    generator = torch.Generator().manual_seed(7)
    return pipe(prompt="a red circle", generator=generator, **SETTINGS, **extra).images[0]  # type: ignore[operator]


def _manager(config_root: Path, dtype: str = "float32") -> ModelManager:
    return ModelManager(device="cpu", dtype=dtype, config_root=config_root)


def test_a_klein_file_loads_offline_with_its_qwen3_encoder_and_flux2_vae(tmp_path: Path) -> None:
    files, reference = write_klein_files(tmp_path)
    progress = Recorder()
    model = _manager(files.config_root).get(str(files.transformer), progress, never)

    assert (model.family, model.variant, model.label) == (
        ModelFamily.FLUX2,
        "distilled",
        "FLUX.2 klein",
    )
    assert type(model.pipe).__name__ == "Flux2KleinPipeline" and model.pipe.config.is_distilled
    stages = [s for s, _ in progress.events]
    assert stages[0] == "reading flux-2-klein-4b.safetensors"
    assert {"loading transformer", "loading text_encoder", "loading vae"} <= set(stages)
    assert model.notes == ()
    # The encoder file has no output head: it shares the embeddings, which nothing reads.
    text = model.pipe.text_encoder
    assert text.lm_head.weight is text.get_input_embeddings().weight
    np.testing.assert_allclose(_image(model.pipe), _image(reference), atol=1e-5)


def test_klein_base_is_told_from_its_name_and_runs_with_true_cfg(tmp_path: Path) -> None:
    files, reference = write_klein_files(tmp_path, distilled=False)
    model = _manager(files.config_root).get(str(files.transformer), Recorder(), never)

    assert (model.variant, model.label) == ("base", "FLUX.2 klein base")
    assert model.pipe.config.is_distilled is False
    guided = {"guidance_scale": 4.0}
    np.testing.assert_allclose(_image(model.pipe, **guided), _image(reference, **guided), atol=1e-5)


def test_a_file_under_comfyuis_prefix_in_fp8_stays_fp8(tmp_path: Path) -> None:
    files, reference = write_klein_files(
        tmp_path, prefix=flux2_files.PREFIX, dtype=torch.float8_e4m3fn
    )
    model = _manager(files.config_root, "bfloat16").get(str(files.transformer), Recorder(), never)

    assert model.notes[0] == "fp8 (e4m3fn)"
    block = model.pipe.transformer.transformer_blocks[0]
    assert block.attn.to_q.weight.dtype == torch.float8_e4m3fn
    assert block.ff.linear_in.weight.dtype == torch.float8_e4m3fn
    image = _image(model.pipe)
    assert np.isfinite(image).all()
    assert np.abs(image - _image(reference)).mean() < 0.05


def _scaled_fp8(path: Path) -> None:
    """Rewrite a bf16/float32 file as ComfyUI's scaled fp8: each matrix divided by its
    scale and stored in fp8, the scale beside it as `weight_scale`."""
    scaled: dict[str, torch.Tensor] = {}
    for key, value in load_file(path).items():
        if value.ndim == 2:
            scale = value.float().abs().max() / 448
            scaled[key] = (value.float() / scale).to(torch.float8_e4m3fn)
            scaled[key.removesuffix(".weight") + ".weight_scale"] = scale.reshape(())
        else:
            scaled[key] = value
    save_file(scaled, path)


def test_a_scaled_fp8_file_is_unscaled_and_says_so(tmp_path: Path) -> None:
    files, reference = write_klein_files(tmp_path)
    _scaled_fp8(files.transformer)
    model = _manager(files.config_root).get(str(files.transformer), Recorder(), never)

    assert model.notes[0] == "fp8 (e4m3fn), scaled: run unpacked"
    assert model.pipe.transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.float32
    # Unscaled, the weights are the originals to fp8's precision: without the scales they
    # would be up to 448 times too large.
    assert np.abs(_image(model.pipe) - _image(reference)).mean() < 0.05


def test_a_gguf_klein_runs_quantized_and_says_so(tmp_path: Path) -> None:
    files, reference = write_klein_files(tmp_path)
    gguf_file = write_gguf(files.transformer, files.transformer.with_suffix(".gguf"))
    files.transformer.unlink()
    model = _manager(files.config_root, "bfloat16").get(str(gguf_file), Recorder(), never)

    assert model.notes[0] == "GGUF Q8_0"
    linear = model.pipe.transformer.transformer_blocks[0].attn.to_q
    assert type(linear).__name__ == "GGUFLinear" and linear.weight.dtype == torch.uint8
    image = _image(model.pipe)
    assert np.isfinite(image).all()
    assert np.abs(image - _image(reference)).mean() < 0.02


def test_a_missing_vae_is_named_and_the_flux1_vae_is_not_taken_for_it(tmp_path: Path) -> None:
    from safetensors import safe_open

    files, reference = write_klein_files(tmp_path)
    elsewhere = tmp_path / "downloads" / files.vae.name
    elsewhere.parent.mkdir()
    shutil.move(files.vae, elsewhere)
    # FLUX.1's ae.safetensors beside it: a VAE, but of fewer latent channels (16, not 32).
    with safe_open(str(elsewhere), "pt") as f:
        ae = {
            k: f.get_tensor(k)[:4] if k.startswith("encoder.conv_out.") else f.get_tensor(k)
            for k in f.keys()  # noqa: SIM118
        }
    save_file(ae, files.models / "vae" / "ae.safetensors")
    manager = _manager(files.config_root)

    with pytest.raises(EngineError) as caught:
        manager.get(str(files.transformer), Recorder(), never)
    assert caught.value.kind == ErrorKind.MODEL
    message = caught.value.message
    assert message.startswith(
        "FLUX.2 klein 4B needs the FLUX.2 VAE (flux2-vae.safetensors) beside "
        "flux-2-klein-4b.safetensors, and none was found (looked in"
    )
    assert str(files.models / "vae") in message
    assert "do not fit this model: ae.safetensors (vae, width 2)" in message

    # Chosen by hand (the CLI's --vae, the window's Choose file…), it loads.
    model = manager.get(str(files.transformer), Recorder(), never, files=[str(elsewhere)])
    np.testing.assert_allclose(_image(model.pipe), _image(reference), atol=1e-5)


def test_a_flux1_vae_chosen_by_hand_is_refused_in_a_sentence(tmp_path: Path) -> None:
    files, _ = write_klein_files(tmp_path)
    state = load_file(files.vae)
    save_file({k: v for k, v in state.items() if not k.startswith("bn.")}, files.vae)
    with pytest.raises(EngineError, match=r"is not a FLUX\.2 VAE.*needs flux2-vae\.safetensors"):
        _manager(files.config_root).get(str(files.transformer), Recorder(), never)


def test_the_cli_names_a_missing_qwen3_encoder_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine import cli

    files, _ = write_klein_files(tmp_path)
    shutil.rmtree(files.models / "text_encoders")
    output = tmp_path / "out.png"
    code = cli.main(
        ["generate", "--prompt", "a cat", "--model", str(files.transformer), "--device", "cpu"]
        + ["--output", str(output), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert (
        "FLUX.2 klein 4B needs the Qwen3 4B (qwen_3_4b.safetensors) text encoder beside "
        "flux-2-klein-4b.safetensors" in err
    )
    assert not output.exists()


def _header_only(path: Path, shapes: dict[str, list[int]]) -> Path:
    """A safetensors file whose header names tensors of these shapes (bf16) and holds no
    data: what the engine reads to choose files, at the real models' sizes."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def _klein_header(folder: str) -> dict[str, list[int]]:
    """The BFL-layout names and shapes of a real klein, from the shipped config."""
    from accelerate import init_empty_weights
    from diffusers import Flux2Transformer2DModel

    config = Flux2Transformer2DModel.load_config(model_configs_dir() / folder / "transformer")
    with init_empty_weights():
        model = Flux2Transformer2DModel.from_config(config)
    return {k: list(v.shape) for k, v in flux2_to_original(model.state_dict()).items()}


@pytest.mark.parametrize(
    ("name", "folder", "size", "distilled", "parameters"),
    [
        ("flux-2-klein-4b.safetensors", "flux2-klein-4b", "4B", True, 3_875_544_576),
        ("flux-2-klein-base-9b.safetensors", "flux2-klein-9b", "9B", False, 9_078_581_248),
    ],
)
def test_4b_and_9b_are_told_from_the_file_and_the_shipped_configs_match_them(
    name: str, folder: str, size: str, distilled: bool, parameters: int
) -> None:
    from accelerate import init_empty_weights
    from diffusers import Flux2Transformer2DModel

    shapes = _klein_header(folder)
    klein = flux2_files.inspect(Path(name), shapes)
    assert (klein.config_folder, klein.size, klein.distilled) == (folder, size, distilled)
    shipped = dict(
        Flux2Transformer2DModel.load_config(model_configs_dir() / folder / "transformer")
    )
    derived = flux2_files.transformer_config(shipped, shapes)
    assert derived == shipped  # the real files need no change to the shipped config
    with init_empty_weights():
        model = Flux2Transformer2DModel.from_config(shipped)
    assert sum(p.numel() for p in model.parameters()) == parameters  # 3.9B and 9.1B


def test_flux2_dev_is_refused_in_words() -> None:
    shapes = {"txt_in.weight": [6144, 15360], "single_stream_modulation.lin.weight": [18432, 6144]}
    with pytest.raises(EngineError, match="is FLUX.2 dev .* use FLUX.2 klein 4B or 9B"):
        flux2_files.inspect(Path("flux2-dev.safetensors"), shapes)


def test_klein_9b_asks_for_qwen3_8b_and_names_the_4b_encoder_that_does_not_fit(
    tmp_path: Path,
) -> None:
    from engine import flow_single_file as flow
    from engine import quantized

    models = tmp_path / "ComfyUI" / "models"
    transformer = _header_only(
        models / "diffusion_models" / "flux-2-klein-9b.safetensors", _klein_header("flux2-klein-9b")
    )
    qwen_4b = {
        "model.embed_tokens.weight": [151936, 2560],
        "model.layers.0.self_attn.q_norm.weight": [128],
    }
    _header_only(models / "text_encoders" / "qwen_3_4b.safetensors", qwen_4b)
    spec = flow.inspect_transformer(transformer, quantized.read_header(transformer))
    assert (spec.family, spec.variant, spec.index_overrides) == (
        ModelFamily.FLUX2,
        "flux2-klein-9b",
        {"is_distilled": True},
    )
    configs = flow.Configs.of(spec, model_configs_dir())
    with pytest.raises(EngineError) as caught:
        flow.choose_files(spec, configs, roots=[])
    message = caught.value.message
    assert message.startswith(
        "FLUX.2 klein 9B needs the Qwen3 8B (qwen_3_8b.safetensors) text encoder beside "
        "flux-2-klein-9b.safetensors"
    )
    assert "do not fit this model: qwen_3_4b.safetensors (qwen3, width 2560)" in message

    _header_only(
        models / "text_encoders" / "qwen_3_8b.safetensors",
        {
            "model.embed_tokens.weight": [151936, 4096],
            "model.layers.0.self_attn.q_norm.weight": [128],
        },
    )
    with pytest.raises(EngineError, match=r"needs the FLUX\.2 VAE \(flux2-vae\.safetensors\)"):
        flow.choose_files(spec, configs, roots=[])


def test_the_flux2_vae_in_diffusers_layout_loads_too(tmp_path: Path) -> None:
    files, reference = write_klein_files(tmp_path)
    save_file({k: v.contiguous() for k, v in reference.vae.state_dict().items()}, files.vae)
    model = _manager(files.config_root).get(str(files.transformer), Recorder(), never)
    np.testing.assert_allclose(_image(model.pipe), _image(reference), atol=1e-5)


@pytest.mark.slow
def test_the_engine_paints_and_inpaints_from_the_files_as_from_a_diffusers_folder(
    tmp_path: Path,
) -> None:
    """Text to image and inpaint through the real engine: a preview every step, and the
    same pixels from the single files as from the same model saved as a diffusers folder."""
    from engine.worker import Engine

    files, reference = write_klein_files(tmp_path)
    folder = tmp_path / "klein-folder"
    reference.save_pretrained(folder, safe_serialization=True)
    engine = Engine(_manager(files.config_root))
    events = Events()
    engine.add_listener(events)
    base = GenerationRequest(
        prompt="a red circle",
        steps=3,
        guidance_scale=1.0,
        seed=7,
        width=64,
        height=64,
        scheduler="Euler",
    )
    inpaint = {
        "init_image": picture((64, 64)),
        "mask": box_mask((64, 64), (16, 16, 48, 40)),
        "strength": 0.9,
        "mask_blur": 0,
    }
    try:
        for changes in ({}, inpaint):
            pictures = []
            for model in (str(files.transformer), str(folder)):
                job = engine.submit(base.with_changes(model=model, **changes))
                ended = engine.wait(job, WAIT)
                assert isinstance(ended, Finished), ended
                assert [s.step for s in events.of(job, Step)] == [1, 2, 3]
                (started,) = events.of(job, Started)
                assert (started.family, started.variant) == ("flux2", "distilled")
                pictures.append(np.asarray(ended.images[0].convert("RGB")).astype(int))
            assert np.abs(pictures[0] - pictures[1]).max() <= 1
            if changes:
                outside = np.asarray(inpaint["mask"]) <= 127
                kept = np.asarray(inpaint["init_image"])[outside]
                np.testing.assert_array_equal(pictures[0][outside], kept)
    finally:
        engine.shutdown(10)
