"""Textual-inversion embeddings found by name in the prompt (loaded, then unloaded when
no longer named) and the VAE override (a folder, a single file; the own VAE comes back)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from engine_helpers import TINY, TINY_SDXL, WAIT, request
from ldm_checkpoint import vae_to_ldm
from safetensors.torch import save_file

from engine.addons.embeddings import read_embedding
from engine.addons.vae import load_vae
from engine.api import EngineError, Failed, Finished


def pipe_of(models, source=TINY):
    return models.get(source, lambda *_: None, lambda: False).pipe


def embeddings_dir(models_root):
    return models_root.parent / "embeddings"


def finished(engine, **changes) -> Finished:
    result = engine.generate(request(**changes), WAIT)
    assert isinstance(result, Finished), result
    return result


def test_an_embedding_named_in_the_prompt_is_loaded_and_unloaded_when_no_longer_named(
    addon_engine, own_models, models_root
):
    pipe = pipe_of(own_models)
    vectors = torch.randn(2, 16)
    save_file({"emb_params": vectors}, str(embeddings_dir(models_root) / "shiny.safetensors"))
    table = pipe.text_encoder.get_input_embeddings().weight.detach().clone()
    folders = (str(models_root),)
    finished(addon_engine, prompt="a shiny circle", model_folders=folders)
    vocab = pipe.tokenizer.get_vocab()
    assert "shiny" in vocab and "shiny_1" in vocab
    rows = pipe.text_encoder.get_input_embeddings().weight
    assert torch.equal(rows[vocab["shiny"]], vectors[0])
    assert torch.equal(rows[vocab["shiny_1"]], vectors[1])
    # Named only in the negative prompt: still used, as in A1111.
    finished(addon_engine, negative_prompt="shiny", model_folders=folders)
    assert "shiny" in pipe.tokenizer.get_vocab()
    finished(addon_engine, model_folders=folders)
    assert "shiny" not in pipe.tokenizer.get_vocab()
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight, table)


def test_an_sdxl_embedding_loads_into_both_text_encoders(own_models, tmp_path):
    path = tmp_path / "xl.safetensors"
    save_file({"clip_l": torch.randn(1, 16), "clip_g": torch.randn(1, 24)}, str(path))
    vectors = read_embedding(path, "sdxl")
    assert set(vectors) == {"text_encoder", "text_encoder_2"}
    with pytest.raises(
        EngineError, match="was made for SDXL and this model is Stable Diffusion 1.x"
    ):
        read_embedding(path, "sd1")


def test_an_sd1_embedding_on_sdxl_fails_the_job_with_a_sentence(addon_engine, models_root):
    save_file(
        {"emb_params": torch.randn(1, 16)}, str(embeddings_dir(models_root) / "old.safetensors")
    )
    result = addon_engine.generate(
        request(prompt="an old cat", model=TINY_SDXL, model_folders=(str(models_root),)), WAIT
    )
    assert isinstance(result, Failed)
    assert "made for Stable Diffusion 1.x or 2.x and this model is SDXL" in result.message


def _other_vae(seed: int = 7) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8,) * 4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )


def test_a_vae_folder_replaces_the_models_vae_and_the_own_comes_back(
    addon_engine, own_models, models_root
):
    folder = models_root / "VAE" / "other"
    _other_vae().save_pretrained(folder)
    own = pipe_of(own_models).vae
    base = np.asarray(finished(addon_engine).images[0])
    swapped = finished(addon_engine, vae=str(folder), model_folders=(str(models_root),))
    assert not np.array_equal(np.asarray(swapped.images[0]), base)
    assert swapped.request.vae == str(folder)
    again = np.asarray(finished(addon_engine).images[0])
    assert np.array_equal(again, base)
    assert pipe_of(own_models).vae is own


def test_an_a1111_single_file_vae_loads_against_the_family_config(tmp_path):
    vae = _other_vae(3)
    config_dir = tmp_path / "sd1"
    vae.save_config(config_dir / "vae")
    ldm = vae_to_ldm(vae.state_dict(), dict(vae.config))
    plain = {k.removeprefix("first_stage_model."): v for k, v in ldm.items()}
    path = tmp_path / "vae-ft.safetensors"
    save_file(plain, str(path))
    loaded = load_vae(path, config_dir, torch.float32)
    for key, value in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key].reshape(value.shape), value), key
    # The same weights in diffusers' key layout, as one file.
    flat = tmp_path / "diffusers-layout.safetensors"
    save_file(vae.state_dict(), str(flat))
    assert torch.equal(
        load_vae(flat, config_dir, torch.float32).decoder.conv_out.weight,
        vae.decoder.conv_out.weight,
    )


def test_a_vae_that_is_not_there_fails_the_job_saying_where_to_put_it(addon_engine, models_root):
    result = addon_engine.generate(
        request(vae="nothing-here", model_folders=(str(models_root),)), WAIT
    )
    assert isinstance(result, Failed)
    assert 'The VAE "nothing-here"' in result.message and "VAE folder" in result.message


def test_a_pickled_embedding_named_in_the_prompt_is_not_opened_and_the_job_says_so(
    addon_engine, models_root
):
    (embeddings_dir(models_root) / "oldstyle.pt").write_bytes(b"not opened")
    result = finished(addon_engine, prompt="an oldstyle cat", model_folders=(str(models_root),))
    assert any("oldstyle is a .pt file" in w for w in result.warnings)


def test_switching_to_another_model_gives_the_first_one_back_unchanged(
    addon_engine, own_models, models_root
):
    folder = models_root / "VAE" / "other"
    _other_vae().save_pretrained(folder)
    pipe = pipe_of(own_models)
    own = pipe.vae
    finished(addon_engine, vae=str(folder), model_folders=(str(models_root),))
    assert pipe.vae is not own
    finished(addon_engine, model=TINY_SDXL)
    assert pipe.vae is own
