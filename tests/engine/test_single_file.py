"""Single-file checkpoints (.safetensors, allowed pickles): loaded offline with the shipped
configs, the same weights as the diffusers folder, and a clear word for what is not a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline
from model_helpers import (
    Recorder,
    assert_same_weights,
    never,
    write_checkpoint,
)

from engine.api import EngineError, ErrorKind, JobCancelled
from engine.models import ModelManager

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_single_file_sd_loads_offline_with_the_same_weights(
    family: str, tiny_configs: Path, tmp_path: Path, no_network: None
) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / family)
    path = write_checkpoint(reference, family, tmp_path / f"{family}.safetensors")
    progress = Recorder()
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(path), progress, never)
    assert model.family == family
    assert isinstance(model.pipe, StableDiffusionPipeline)
    assert not model.is_inpaint_unet
    for name in ("unet", "vae", "text_encoder"):
        assert_same_weights(getattr(reference, name), getattr(model.pipe, name))
    assert model.pipe.scheduler.config.prediction_type == "epsilon"
    stages = [s for s, _ in progress.events]
    assert stages[0] == f"reading {path.name}"
    assert {"loading unet", "loading vae", "loading text_encoder"} <= set(stages)
    assert stages[-1] == "ready"
    out = model.pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="np")
    assert out.images.shape == (1, 32, 32, 3)


def test_single_file_sd2_v_prediction_marker(
    tiny_configs: Path, tmp_path: Path, no_network: None
) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd2")
    path = write_checkpoint(
        reference, "sd2", tmp_path / "v.safetensors", {"v_pred": torch.tensor([])}
    )
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(path), Recorder(), never)
    assert model.pipe.scheduler.config.prediction_type == "v_prediction"
    # ... and the A1111 convention: an original-config YAML next to the file.
    plain = write_checkpoint(reference, "sd2", tmp_path / "y.safetensors")
    (tmp_path / "y.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(plain), Recorder(), never)
    assert model.pipe.scheduler.config.prediction_type == "v_prediction"


def test_single_file_sdxl_loads_offline(
    tiny_configs: Path, tmp_path: Path, no_network: None
) -> None:
    from diffusers import StableDiffusionXLPipeline

    reference = StableDiffusionXLPipeline.from_pretrained(tiny_configs / "sdxl")
    path = write_checkpoint(reference, "sdxl", tmp_path / "xl.safetensors")
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(path), Recorder(), never)
    assert model.family == "sdxl"
    assert isinstance(model.pipe, StableDiffusionXLPipeline)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert_same_weights(getattr(reference, name), getattr(model.pipe, name))
    out = model.pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="np")
    assert out.images.shape == (1, 32, 32, 3)


def test_single_file_inpainting_unet(tiny_configs: Path, tmp_path: Path) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1-inpaint")
    path = write_checkpoint(reference, "sd1", tmp_path / "inpaint.safetensors")
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(path), Recorder(), never)
    assert model.is_inpaint_unet
    assert_same_weights(reference.unet, model.pipe.unet)


def test_pickle_checkpoints_are_refused_unless_allowed(tiny_configs: Path, tmp_path: Path) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "old.ckpt")
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu", config_root=tiny_configs).get(str(path), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "pickle" in err.value.message and "arbitrary code" in err.value.message
    manager = ModelManager(device="cpu", allow_pickle=True, config_root=tiny_configs)
    model = manager.get(str(path), Recorder(), never)
    assert_same_weights(reference.unet, model.pipe.unet)


def test_truncated_safetensors_is_a_model_error(tiny_configs: Path, tmp_path: Path) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "whole.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu", config_root=tiny_configs).get(str(cut), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "truncated or damaged" in err.value.message
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(EngineError, match="download it again"):
        ModelManager(device="cpu").get(str(junk), Recorder(), never)


def test_unsupported_architectures(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    unrelated = tmp_path / "classifier.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, unrelated)
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get(str(unrelated), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "not a Stable Diffusion checkpoint" in err.value.message
    assert "SDXL" in err.value.message  # says what does work

    flux_like = tmp_path / "flux.safetensors"
    save_file(
        {"model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(2)},
        flux_like,
    )
    # A FLUX.1 transformer on its own: the files it needs beside it are named.
    with pytest.raises(EngineError, match="FLUX.1 needs the CLIP-L text encoder"):
        ModelManager(device="cpu").get(str(flux_like), Recorder(), never)

    playground = tmp_path / "playground.safetensors"
    save_file(
        {"model.diffusion_model.out.2.weight": torch.zeros(1), "edm_mean": torch.zeros(4)},
        playground,
    )
    with pytest.raises(EngineError, match="Playground v2.5"):
        ModelManager(device="cpu").get(str(playground), Recorder(), never)

    other = tmp_path / "model.gguf"
    other.write_bytes(b"GGUF")
    with pytest.raises(EngineError, match=r"model.gguf cannot be read \(not a readable GGUF"):
        ModelManager(device="cpu").get(str(other), Recorder(), never)


def test_cancel_between_single_file_stages(tiny_configs: Path, tmp_path: Path) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "c.safetensors")
    progress = Recorder()

    def cancel_after_text_encoder() -> bool:
        return any(stage == "loading text_encoder" for stage, _ in progress.events)

    manager = ModelManager(device="cpu", config_root=tiny_configs)
    with pytest.raises(JobCancelled):
        manager.get(str(path), progress, cancel_after_text_encoder)
    assert "loading unet" not in [s for s, _ in progress.events]
    assert manager.current is None


def test_configured_tiny_vae_for_a_single_file(tiny_configs: Path, tmp_path: Path) -> None:
    from diffusers import AutoencoderTiny

    from engine.models import default_tiny_vae_dirs

    assert default_tiny_vae_dirs()["sdxl"].name == "taesdxl"
    taesd = tmp_path / "bundled" / "taesd"  # not beside the file, where it would be found
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(taesd)
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "m.safetensors")
    factors = [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5], [0.1, 0.1, 0.1]]
    (tmp_path / "m.latent_rgb.json").write_text(json.dumps({"factors": factors, "bias": [0, 0, 0]}))
    manager = ModelManager(device="cpu", config_root=tiny_configs, tiny_vae_dirs={"sd1": taesd})
    model = manager.get(str(path), Recorder(), never)
    assert isinstance(model.tiny_vae, AutoencoderTiny)
    assert model.latent_rgb == (factors, [0.0, 0.0, 0.0])
    plain = ModelManager(device="cpu", config_root=tiny_configs, tiny_vae_dirs={})
    assert plain.get(str(path), Recorder(), never).tiny_vae is None


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_half_precision_checkpoint_loads_in_the_chosen_dtype(
    precision: str, tiny_configs: Path, tmp_path: Path
) -> None:
    from ldm_checkpoint import pipeline_to_ldm
    from safetensors.torch import save_file

    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    state = {
        k: v.half() if v.is_floating_point() else v
        for k, v in pipeline_to_ldm(reference, "sd1").items()
    }
    save_file(state, tmp_path / "pruned-fp16.safetensors")
    manager = ModelManager(device="cpu", dtype=precision, config_root=tiny_configs)
    model = manager.get(str(tmp_path / "pruned-fp16.safetensors"), Recorder(), never)
    expected = getattr(torch, precision)
    assert model.dtype == expected
    for part in (model.pipe.unet, model.pipe.vae, model.pipe.text_encoder):
        assert {p.dtype for p in part.parameters()} == {expected}


def test_a_lora_is_not_a_model(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "style.safetensors"
    save_file(
        {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 4)}, path
    )
    with pytest.raises(EngineError, match="is a LoRA"):
        ModelManager(device="cpu").get(str(path), Recorder(), never)


@pytest.mark.parametrize(
    ("dropped", "part"),
    [
        ("model.diffusion_model.out.2.weight", "UNet"),
        ("first_stage_model.decoder.conv_out.weight", "VAE"),
        ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "text encoder"),
    ],
)
def test_checkpoint_with_missing_weights(
    dropped: str, part: str, tiny_configs: Path, tmp_path: Path
) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "m.safetensors")
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    del state[dropped]
    save_file(state, path)
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu", config_root=tiny_configs).get(str(path), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert f"The checkpoint's {part} is incomplete" in err.value.message


@pytest.mark.slow
def test_engine_generates_from_single_files_with_the_real_manager(
    tiny_configs: Path, tmp_path: Path, no_network: None
) -> None:
    """The worker drives ModelManager: loading events, then images; switching models
    (SD 1.x file, then an SDXL file) releases the first; the PNG keeps the parameters."""
    import time

    from diffusers import StableDiffusionXLPipeline
    from engine_helpers import Recorder as EventRecorder

    from engine import metadata
    from engine.api import TERMINAL_KINDS, Finished, GenerationRequest, ModelLoading
    from engine.worker import Engine

    sd1 = write_checkpoint(
        StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1"),
        "sd1",
        tmp_path / "sd1.safetensors",
    )
    xl = write_checkpoint(
        StableDiffusionXLPipeline.from_pretrained(tiny_configs / "sdxl"),
        "sdxl",
        tmp_path / "xl.safetensors",
    )
    manager = ModelManager(device="cpu", config_root=tiny_configs)
    engine = Engine(manager)
    events = EventRecorder()
    engine.add_listener(events)
    try:
        base = GenerationRequest(prompt="a red circle", steps=2, width=32, height=32, seed=3)
        jobs = [engine.submit(base.with_changes(model=str(p))) for p in (sd1, xl)]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
            any(e.kind in TERMINAL_KINDS for e in events.of(j)) for j in jobs
        ):
            time.sleep(0.05)
        for job in jobs:
            finished = events.of(job, Finished)
            assert finished, events.of(job)
            assert finished[0].images[0].size == (32, 32)
            stages = [e.stage for e in events.of(job, ModelLoading)]
            assert stages[0].startswith("reading ") and stages[-1] == "ready"
        assert manager.current is not None and manager.current.family == "sdxl"
        done = events.of(jobs[1], Finished)[0]
        path = metadata.save_png(done.images[0], tmp_path / "xl.png", done.request, done.seeds[0])
        assert metadata.read_parameters(path) == done.request.with_changes(seed=done.seeds[0])
    finally:
        engine.shutdown(10)
