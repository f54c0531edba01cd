"""The final decode: the tiny autoencoder on request ("fast decode"), a warning when its
weights are missing, and VAE tiling above about a megapixel."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderTiny
from engine_helpers import WAIT, request

from engine import cli, metadata
from engine.api import Finished
from engine.backends import decode


def tiny_autoencoder() -> AutoencoderTiny:
    torch.manual_seed(0)
    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    )


@pytest.fixture
def with_taesd(tiny_models) -> tuple[str, AutoencoderTiny]:
    base = tiny_models.get("tiny", lambda *_: None, lambda: False)
    taesd = tiny_autoencoder()
    tiny_models.variants["fast"] = dataclasses.replace(base, tiny_vae=taesd)
    return "fast", taesd


def count_calls(module: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_fast_decode_makes_the_picture_with_the_tiny_autoencoder(engine, tiny_models, with_taesd):
    name, taesd = with_taesd
    vae = tiny_models.get(name, lambda *_: None, lambda: False).pipe.vae
    full_decodes = count_calls(vae.decoder)
    result = engine.generate(request(model=name, steps=3, fast_decode=True), WAIT)
    assert isinstance(result, Finished), result
    assert not full_decodes and not result.warnings
    latents = engine.trajectory(result.job_id).latents[-1]
    with torch.no_grad():
        expected = taesd.decode(latents).sample.clamp(-1, 1)[0].permute(1, 2, 0).numpy()
    expected = np.round((expected + 1) * 127.5).astype(int)
    assert np.abs(np.asarray(result.images[0]).astype(int) - expected).max() <= 1
    # The next job without fast decode uses the full VAE again.
    plain = engine.generate(request(model=name, steps=3), WAIT)
    assert isinstance(plain, Finished) and len(full_decodes) == 1
    assert "decode" not in vars(vae)


def test_fast_decode_without_tiny_weights_warns_and_uses_the_full_vae(engine):
    result = engine.generate(request(steps=2, fast_decode=True), WAIT)
    assert isinstance(result, Finished), result
    assert result.warnings == (decode.NO_TINY_VAE,)


def test_large_pictures_decode_in_tiles_and_small_ones_do_not() -> None:
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4)
    with decode.final_decode(vae, None, width=1024, height=1024, fast=False):
        assert not vae.use_tiling
    with decode.final_decode(vae, None, width=1280, height=1024, fast=False):
        assert vae.use_tiling
    assert not vae.use_tiling


def test_a_large_picture_goes_through_the_tiled_decode(engine, tiny_models, monkeypatch):
    vae = tiny_models.get("tiny", lambda *_: None, lambda: False).pipe.vae
    tiles: list[tuple[int, ...]] = []
    tiled_decode = vae.tiled_decode
    monkeypatch.setattr(
        vae, "tiled_decode", lambda z, **kw: tiles.append(tuple(z.shape)) or tiled_decode(z, **kw)
    )
    plain = engine.generate(request(steps=2, width=64, height=64), WAIT)
    assert isinstance(plain, Finished) and not tiles
    monkeypatch.setattr(decode, "TILING_PIXELS", 32 * 32)
    tiled = engine.generate(request(steps=2, width=64, height=64), WAIT)
    assert isinstance(tiled, Finished), tiled
    assert tiles == [(1, 4, 8, 8)] and not vae.use_tiling
    assert np.asarray(tiled.images[0]).shape == (64, 64, 3)


def test_cli_passes_the_speed_options_and_saves_them(tmp_path, capsys, tiny_models):
    out = tmp_path / "out.png"
    code = cli.main(
        ["generate", "--prompt", "a red circle", "--model", "tiny", "--steps", "4",
         "--width", "32", "--height", "32", "--guidance-cutoff", "0.5", "--fast-decode",
         "--output", str(out)],
        models=tiny_models,
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Fast decode needs tiny-autoencoder" in captured.err
    back = metadata.read_parameters(out)
    assert back is not None and back.guidance_cutoff == 0.5 and back.fast_decode is True
    code = cli.main(
        ["generate", "--prompt", "x", "--model", "tiny", "--guidance-cutoff", "2",
         "--output", str(out)],
        models=tiny_models,
    )  # fmt: skip
    assert code == 1 and "cut-off must be a fraction" in capsys.readouterr().err
