"""ModelManager with diffusers folders: loading with progress, reuse, release, cancel,
and the errors people see for broken folders."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline
from model_helpers import (
    Recorder,
    assert_same_weights,
    never,
)
from tiny_models import save_tiny_model

from engine.api import EngineError, ErrorKind, JobCancelled
from engine.models import LoadedModel, ModelManager

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_device_description_known_before_any_load() -> None:
    manager = ModelManager(device="cpu", dtype="float32")
    assert manager.device_description == "cpu (float32)"
    assert manager.current is None


def test_loads_a_diffusers_folder_with_progress(tiny_folder: Path) -> None:
    manager = ModelManager(device="cpu")
    progress = Recorder()
    model = manager.get(str(tiny_folder), progress, never)
    assert isinstance(model, LoadedModel)
    assert isinstance(model.pipe, StableDiffusionPipeline)
    assert model.family == "sd1"
    assert model.source == str(tiny_folder)
    assert model.is_inpaint_unet is False
    assert model.latent_rgb is None and model.tiny_vae is None
    # "auto": bfloat16 + channels_last on a CPU with bfloat16 units, float32 elsewhere.
    policy = manager.policy
    assert model.device == torch.device("cpu") and model.dtype == policy.dtype
    assert model.pipe.unet.dtype == policy.dtype == model.pipe.vae.dtype
    weight = model.pipe.unet.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) == policy.channels_last
    assert progress.events[-1] == ("ready", 1.0)
    fractions = [f for _, f in progress.events]
    assert fractions == sorted(fractions)
    # The pipeline works.
    out = model.pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="np")
    assert out.images.shape == (1, 32, 32, 3)


def test_inpaint_unet_is_flagged(tiny_inpaint_folder: Path) -> None:
    model = ModelManager(device="cpu").get(str(tiny_inpaint_folder), Recorder(), never)
    assert model.is_inpaint_unet is True


def test_model_is_reused_and_switching_releases_the_old_one(
    tiny_folder: Path, tiny_inpaint_folder: Path
) -> None:
    manager = ModelManager(device="cpu")
    first = manager.get(str(tiny_folder), Recorder(), never)
    progress = Recorder()
    assert manager.get(str(tiny_folder), progress, never) is first
    assert progress.events == []  # reuse does not reload
    pipe_ref = weakref.ref(first.pipe)
    unet_ref = weakref.ref(first.pipe.unet)
    del first
    second = manager.get(str(tiny_inpaint_folder), Recorder(), never)
    gc.collect()
    assert pipe_ref() is None and unet_ref() is None
    assert second.is_inpaint_unet
    manager.release()
    assert manager.current is None


def test_release_frees_the_pipeline(tiny_folder: Path) -> None:
    manager = ModelManager(device="cpu")
    ref = weakref.ref(manager.get(str(tiny_folder), Recorder(), never).pipe)
    manager.release()
    gc.collect()
    assert ref() is None


def test_latent_rgb_and_tiny_vae_from_the_folder(tmp_path: Path) -> None:
    from diffusers import AutoencoderTiny

    folder = save_tiny_model(tmp_path / "m")
    factors = [[0.1, 0.2, 0.3], [0.0, 0.1, 0.0], [0.2, 0.0, 0.1], [0.0, 0.0, 0.3]]
    (folder / "latent_rgb.json").write_text(json.dumps({"factors": factors, "bias": [0, 0, 1]}))
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(folder / "taesd")
    model = ModelManager(device="cpu").get(str(folder), Recorder(), never)
    assert model.latent_rgb == (factors, [0.0, 0.0, 1.0])
    assert isinstance(model.tiny_vae, AutoencoderTiny)


def test_cancel_between_loading_stages(tiny_folder: Path) -> None:
    calls = {"n": 0}

    def cancel_on_third() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    manager = ModelManager(device="cpu")
    with pytest.raises(JobCancelled):
        manager.get(str(tiny_folder), Recorder(), cancel_on_third)
    assert manager.current is None


def test_folder_without_model_index(tmp_path: Path) -> None:
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get(str(tmp_path), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "model_index.json" in err.value.message


def test_folder_with_only_pickle_weights_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    pipe = StableDiffusionPipeline.from_pretrained(save_tiny_model(tmp_path / "src"))
    pipe.save_pretrained(folder, safe_serialization=False)
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get(str(folder), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "arbitrary code" in err.value.message
    model = ModelManager(device="cpu", allow_pickle=True).get(str(folder), Recorder(), never)
    assert model.family == "sd1"


def test_folder_with_only_fp16_variant_weights(tmp_path: Path) -> None:
    folder = tmp_path / "variant"
    pipe = StableDiffusionPipeline.from_pretrained(save_tiny_model(tmp_path / "src"))
    pipe.save_pretrained(folder, variant="fp16")
    assert not (folder / "unet" / "diffusion_pytorch_model.safetensors").exists()
    model = ModelManager(device="cpu", dtype="float32").get(str(folder), Recorder(), never)
    assert model.pipe.unet.dtype == torch.float32
    assert_same_weights(pipe.unet, model.pipe.unet)


def test_weights_missing_from_a_folder(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "m")
    for f in (folder / "vae").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get(str(folder), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL and "vae weights are missing" in err.value.message


def test_bad_latent_rgb_file_is_a_model_error(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "m")
    (folder / "latent_rgb.json").write_text(json.dumps({"factors": [[1, 2]], "bias": [0, 0, 0]}))
    with pytest.raises(EngineError, match="latent"):
        ModelManager(device="cpu").get(str(folder), Recorder(), never)
