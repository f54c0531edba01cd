"""FLUX.2 klein from the files people download: BFL's transformer file (bf16, fp8, scaled
fp8, GGUF), ComfyUI's Qwen3 text encoder and the FLUX.2 VAE as separate files, loaded
offline; the same pixels as the diffusers pipeline they came from and as the same tiny
model saved as a diffusers folder; 4B, 9B, distilled and base told apart; a missing or
wrong file named. (GGUF transformers of every family: test_transformer_files.py.)"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import WAIT, box_mask, picture, request
from engine_helpers import Recorder as Events
from model_helpers import Recorder, never
from safetensors.torch import load_file, save_file

from engine import flux2_files
from engine.api import (
    EngineError,
    Finished,
    ModelFamily,
    Started,
    Step,
)
from engine.families.flux2 import FILE_PREFIX, klein_file
from engine.resources import model_configs_dir
from tests.single_file_cases import cpu_manager, load_error
from tests.tiny_flow_files import write_gguf
from tests.tiny_klein_files import flux2_to_original, write_klein_files

pytestmark = pytest.mark.usefixtures("one_torch_thread", "no_network")

SETTINGS = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}


def _image(pipe: object, **extra: object) -> np.ndarray:
    generator = torch.Generator().manual_seed(7)
    return pipe(prompt="a red circle", generator=generator, **SETTINGS, **extra).images[0]  # type: ignore[operator]


def test_a_klein_file_loads_offline_with_its_qwen3_encoder_and_flux2_vae(tmp_path: Path) -> None:
    files, reference = write_klein_files(tmp_path)
    progress = Recorder()
    model = cpu_manager(files.config_root).get(str(files.transformer), progress, never)

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
    model = cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)

    assert (model.variant, model.label) == ("base", "FLUX.2 klein base")
    assert model.pipe.config.is_distilled is False
    guided = {"guidance_scale": 4.0}
    np.testing.assert_allclose(_image(model.pipe, **guided), _image(reference, **guided), atol=1e-5)


def test_a_file_under_comfyuis_prefix_in_fp8_stays_fp8(tmp_path: Path) -> None:
    files, reference = write_klein_files(tmp_path, prefix=FILE_PREFIX, dtype=torch.float8_e4m3fn)
    model = cpu_manager(files.config_root, "bfloat16").get(
        str(files.transformer), Recorder(), never
    )

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


def test_scaled_fp8_transformer_and_encoder_files_are_unscaled_and_say_so(
    tmp_path: Path,
) -> None:
    files, reference = write_klein_files(tmp_path)
    _scaled_fp8(files.transformer)
    _scaled_fp8(files.text_encoders["qwen3"])  # as ComfyUI's qwen_3_8b_fp8mixed
    model = cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)

    assert model.notes[0] == "fp8 (e4m3fn), scaled: run unpacked"
    assert model.pipe.transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.float32
    assert model.pipe.text_encoder.model.layers[0].mlp.up_proj.weight.dtype == torch.float32
    # Unscaled, the weights are the originals to fp8's precision: without the scales they
    # would be up to 448 times too large.
    assert np.abs(_image(model.pipe) - _image(reference)).mean() < 0.05


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
    manager = cpu_manager(files.config_root)

    message = load_error(manager, files.transformer)
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
        cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)


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
    klein = klein_file(Path(name), shapes)
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
        klein_file(Path("flux2-dev.safetensors"), shapes)


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
    model = cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)
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
    engine = Engine(cpu_manager(files.config_root))
    events = Events()
    engine.add_listener(events)
    base = request(guidance_scale=1.0, seed=7, width=64, height=64, scheduler="Euler")
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


def test_the_model_library_names_a_klein_file_flux2_not_flux1() -> None:
    from engine.checkpoint_keys import CHECKPOINT, classify

    shapes = _klein_header("flux2-klein-4b")
    assert classify(list(shapes), shapes, {}) == (CHECKPOINT, "flux2")
    prefixed = {FILE_PREFIX + k: v for k, v in shapes.items()}
    assert classify(list(prefixed), prefixed, {}) == (CHECKPOINT, "flux2")


@pytest.mark.slow
def test_the_cli_makes_a_picture_from_the_files_named_with_text_encoder_and_vae(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from engine import cli
    from engine import models as engine_models
    from engine.addons import apply as addons_apply

    files, _ = write_klein_files(tmp_path)
    elsewhere = tmp_path / "downloads"
    elsewhere.mkdir()
    encoder = shutil.move(files.text_encoders["qwen3"], elsewhere / "my-qwen3-4b.safetensors")
    vae = shutil.move(files.vae, elsewhere / "my-flux2-vae.safetensors")
    # The tiny model's configurations stand in for the shipped ones.
    for module in (engine_models, addons_apply):
        monkeypatch.setattr(module, "model_configs_dir", lambda: files.config_root)
    output = tmp_path / "out.png"
    code = cli.main(
        ["generate", "--prompt", "a red circle", "--model", str(files.transformer)]
        + ["--text-encoder", str(encoder), "--vae", str(vae), "--device", "cpu"]
        + ["--steps", "2", "--width", "32", "--height", "32", "--seed", "7"]
        + ["--output", str(output), "--quiet"]
    )
    assert code == 0
    with Image.open(output) as picture_file:
        assert picture_file.size == (32, 32)
        parameters = picture_file.text.get("parameters", "")
    # klein's own defaults, read from the file before it loaded: Euler, no guidance.
    assert "Steps: 2, Sampler: Euler, CFG scale: 1.0" in parameters
    assert "Family: flux2, Variant: distilled" in parameters


def test_a_klein_file_is_described_before_loading_without_torch(tmp_path: Path) -> None:
    """The form and the CLI read a klein file's family and variant from its header, so
    they start from klein's defaults (4 steps, Euler, no guidance) before anything loads."""
    import subprocess
    import sys

    from engine import families

    files, _ = write_klein_files(tmp_path / "d")
    found = families.describe_source(str(files.transformer))
    assert found is not None and (found[0].family, found[1]) == (ModelFamily.FLUX2, "distilled")
    base, _ = write_klein_files(tmp_path / "b", distilled=False)
    assert families.describe_source(str(base.transformer))[1] == "base"  # type: ignore[index]
    gguf_file = write_gguf(files.transformer, tmp_path / "flux-2-klein-4b-Q8_0.gguf")
    assert families.describe_source(str(gguf_file))[1] == "distilled"  # type: ignore[index]
    # FLUX.1 has double_blocks too, but no shared modulation: not taken for klein.
    flux1 = tmp_path / "flux1-schnell.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(3, 1)}, flux1)
    assert families.describe_source(str(flux1))[0].family is ModelFamily.FLUX1  # type: ignore[index]

    check = (
        "import sys; from engine import families; "
        f"found = families.describe_source({str(gguf_file)!r}); "
        "assert found[1] == 'distilled', found; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_klein_of_another_depth_and_width_builds_from_the_shipped_config_and_its_file(
    tmp_path: Path,
) -> None:
    """The shipped 4B config with the file's own dimensions put in: the tiny klein (2 heads
    of 16, one block of each kind) loads against engine/model_configs/flux2-klein-4b."""
    files, reference = write_klein_files(tmp_path)
    model = flux2_files.load_transformer(
        files.transformer,
        model_configs_dir() / "flux2-klein-4b",
        torch.float32,
        None,
        "FLUX.2 klein",
    )
    assert (model.config.num_attention_heads, model.config.attention_head_dim) == (2, 16)
    assert (model.config.num_layers, model.config.num_single_layers) == (1, 1)
    assert list(model.config.axes_dims_rope) == [4, 4, 4, 4]
    inputs = {
        "hidden_states": torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(0)),
        "encoder_hidden_states": torch.randn(1, 3, 48, generator=torch.Generator().manual_seed(1)),
        "timestep": torch.tensor([0.5]),
        "img_ids": torch.zeros(4, 4),
        "txt_ids": torch.zeros(3, 4),
    }
    with torch.no_grad():
        ours = model(**inputs).sample
        theirs = reference.transformer(**inputs).sample
    torch.testing.assert_close(ours, theirs)


def test_a_damaged_klein_file_is_named_in_a_sentence(tmp_path: Path) -> None:
    files, _ = write_klein_files(tmp_path)
    state = load_file(files.transformer)
    save_file({k: v for k, v in state.items() if not k.startswith("img_in.")}, files.transformer)
    message = load_error(cpu_manager(files.config_root), files.transformer)
    assert message == (
        "flux-2-klein-4b.safetensors is not a complete FLUX.2 klein 4B transformer: it lacks "
        "klein's input projections or attention norms."
    )
