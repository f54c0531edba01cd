"""Tiny autoencoders for the newer families: found beside the model, in the model folders'
vae_approx/ or bundled; one of the wrong latent channels passed over; used for the step
previews and for fast decode (SD 3's taesd3 and Z-Image's taef1, 16 channels, tested
with tiny random AutoencoderTiny models)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny
from engine_helpers import WAIT
from tiny_flow_models import save_flow_model
from tiny_new_families import save_tiny_family

from engine import tiny_autoencoders
from engine.api import Finished, GenerationRequest
from engine.backends.decode import NO_TINY_VAE
from engine.models import ModelManager
from engine.worker import Engine

SIZE = 64


def tiny_ae(folder: Path, channels: int = 16, scale: float = 1.0, shift: float = 0.0) -> Path:
    torch.manual_seed(channels)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=channels,
        scaling_factor=scale,
        shift_factor=shift,
    ).save_pretrained(folder)
    return folder


def test_the_model_folder_comes_first_then_the_model_folders_then_the_bundled_one(
    tmp_path: Path,
) -> None:
    model = tmp_path / "model"
    models = tmp_path / "models"
    bundled = tmp_path / "resources" / "taef1"
    for folder in (
        model / "taef1",
        models / "vae_approx" / "taef1",
        bundled,
    ):
        tiny_ae(folder)

    def found() -> Path | None:
        return tiny_autoencoders.find(
            "taef1", 16, model_dir=model, source=str(model), roots=[models], bundled=bundled
        )

    assert found() == model / "taef1"
    shutil.rmtree(model / "taef1")
    assert found() == models / "vae_approx" / "taef1"
    shutil.rmtree(models / "vae_approx")
    assert found() == bundled
    shutil.rmtree(bundled)
    assert found() is None


def test_a_single_files_neighbour_folder_is_found_and_wrong_channels_are_passed_over(
    tmp_path: Path,
) -> None:
    checkpoint = tmp_path / "checkpoints" / "flux1-dev.safetensors"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"")
    tiny_ae(tmp_path / "models" / "taef1", channels=4)  # a TAESD under FLUX's name
    tiny_ae(checkpoint.parent / "taef1")
    found = tiny_autoencoders.find(
        "taef1",
        16,
        model_dir=None,
        source=str(checkpoint),
        roots=[tmp_path / "models"],
        bundled=None,
    )
    assert found == checkpoint.parent / "taef1"
    shutil.rmtree(found)
    assert (
        tiny_autoencoders.find(
            "taef1",
            16,
            model_dir=None,
            source=str(checkpoint),
            roots=[tmp_path / "models"],
            bundled=None,
        )  # fmt: skip
        is None
    )


def test_families_without_a_loadable_tiny_autoencoder_look_for_none(tmp_path: Path) -> None:
    from engine import families

    tiny_ae(tmp_path / "taesd", channels=32)
    for family in ("flux2", "qwen_image", "sana"):
        profile = families.profile(family)
        assert not profile.tiny_vae_folder
        assert (
            tiny_autoencoders.find(
                profile.tiny_vae_folder,
                profile.latent_channels,
                model_dir=tmp_path,
                source=str(tmp_path),
                roots=[],
                bundled=None,
            )  # fmt: skip
            is None
        )


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = Engine(ModelManager(device="cpu", dtype="float32", tiny_vae_dirs={}))
    yield eng
    eng.shutdown(10)


def ask(model: Path, **changes: object) -> GenerationRequest:
    return GenerationRequest(
        prompt="a red circle",
        steps=3,
        guidance_scale=4.0,
        seed=3,
        width=SIZE,
        height=SIZE,
        scheduler="Euler",
        model=str(model),
    ).with_changes(**changes)


def count_calls(module: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_a_taef1_beside_a_z_image_model_draws_previews_and_the_fast_decode(
    engine: Engine, tmp_path: Path
) -> None:
    folder = save_tiny_family("zimage", tmp_path / "z-image-turbo")
    tiny_ae(folder / "taef1", scale=0.3611, shift=0.1159)
    done = engine.generate(ask(folder, fast_decode=True), WAIT)
    assert isinstance(done, Finished), done
    assert not done.warnings  # the tiny autoencoder was there for the fast decode
    assert done.step_previews[0].shape == (SIZE, SIZE, 3)  # decoded, not 8 x 8 latents
    # The picture is the tiny autoencoder's decode of the last latents, as a pipeline
    # with it for its VAE would make it.
    loaded = engine._models.current  # type: ignore[attr-defined]
    tiny = loaded.tiny_vae
    assert tiny is not None and tiny.config.latent_channels == 16
    latents = engine.trajectory(done.job_id).latents[-1]
    with torch.no_grad():
        decoded = tiny.decode(latents / 0.3611 + 0.1159).sample.clamp(-1, 1)[0]
    expected = np.round((decoded.permute(1, 2, 0).numpy() + 1) * 127.5).astype(int)
    assert np.abs(np.asarray(done.images[0]).astype(int) - expected).max() <= 1


def test_a_taesd3_in_the_model_folders_vae_approx_draws_sd3_previews(
    engine: Engine, tmp_path: Path
) -> None:
    folder = save_flow_model(tmp_path / "sd3-medium", "sd3")
    models = tmp_path / "models"
    tiny_ae(models / "vae_approx" / "taesd3", scale=1.5305, shift=0.0609)
    engine.generate(ask(folder, steps=1, model_folders=(str(models),)), WAIT)  # loads it
    tiny = engine._models.current.tiny_vae  # type: ignore[attr-defined]
    assert tiny is not None
    calls = count_calls(tiny.decoder)
    done = engine.generate(ask(folder, model_folders=(str(models),)), WAIT)
    assert isinstance(done, Finished), done
    assert calls  # the previews went through it (within its share of the sampling time)
    assert all(p.shape == (SIZE, SIZE, 3) for p in done.step_previews)


def test_a_tiny_autoencoder_of_other_channels_beside_the_model_is_not_used(
    engine: Engine, tmp_path: Path
) -> None:
    folder = save_tiny_family("zimage", tmp_path / "z-image")
    tiny_ae(folder / "taesd", channels=4)  # SD's TAESD, left in the wrong folder
    done = engine.generate(ask(folder, fast_decode=True), WAIT)
    assert isinstance(done, Finished), done
    assert engine._models.current.tiny_vae is None  # type: ignore[attr-defined]
    assert NO_TINY_VAE in done.warnings  # said, and the full VAE made the picture
