"""The Z-Image, Qwen-Image, SANA / SANA-Sprint and FLUX.2 klein profiles: detection from
a folder's own files, the latent unpack rules against diffusers' packing, the fitted
preview map, and the arguments each family's pipelines take."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import Flux2KleinPipeline, QwenImagePipeline
from tiny_new_families import save_tiny_family, tiny_family_pipeline

from engine import families
from engine.api import EngineError, GuidanceKind, Mode, ModelFamily
from engine.families import FolderFacts, flux2, qwen_image, sana
from engine.latent_fit import fit_latent_rgb
from engine.preview import LatentRGB


@pytest.mark.parametrize(
    ("name", "family", "variant"),
    [
        ("zimage", ModelFamily.ZIMAGE, "turbo"),
        ("qwen-image", ModelFamily.QWEN_IMAGE, ""),
        ("sana", ModelFamily.SANA, ""),
        ("sana-sprint", ModelFamily.SANA, "sprint"),
        ("flux2-klein", ModelFamily.FLUX2, "distilled"),
        ("flux2-klein-base", ModelFamily.FLUX2, "base"),
    ],
)
def test_a_saved_folder_names_its_family_and_variant_from_its_own_files(
    name: str, family: ModelFamily, variant: str, tmp_path: Path
) -> None:
    folder = save_tiny_family(name, tmp_path / "model")  # the folder name says nothing
    index = json.loads((folder / "model_index.json").read_text())
    profile, found = families.detect(families.folder_facts(folder, index))
    assert (profile.family, found) == (family, variant)


def _facts(class_name: str, name: str = "some/model", **extra: object) -> FolderFacts:
    index = {"_class_name": class_name, "transformer": ["diffusers", "X"], **extra}
    return FolderFacts(index, {}, name=name)


def test_z_image_turbo_is_the_default_and_the_base_model_is_told_by_its_name() -> None:
    profile, variant = families.detect(_facts("ZImagePipeline", "Tongyi-MAI/Z-Image-Turbo"))
    assert variant == "turbo" and profile.variant(variant).guidance is GuidanceKind.NONE
    assert profile.variant(variant).steps == 8
    _, variant = families.detect(_facts("ZImagePipeline", "someone/z-image-base"))
    assert variant == "base"
    assert profile.variant("base").guidance is GuidanceKind.CFG


def test_models_that_share_a_transformer_but_are_other_models_are_refused_by_name() -> None:
    for pipeline in ("QwenImageEditPipeline", "QwenImageLayeredPipeline", "Flux2Pipeline"):
        denoiser = (
            "Flux2Transformer2DModel" if "Flux" in pipeline else "QwenImageTransformer2DModel"
        )
        facts = FolderFacts(
            {"_class_name": pipeline, "transformer": ["diffusers", denoiser]}, {}, name="x/y"
        )
        with pytest.raises(EngineError) as err:
            families.detect(facts, "x/y")
        assert pipeline in err.value.message


def test_each_family_offers_the_modes_diffusers_has_and_says_which_it_lacks() -> None:
    assert families.profile(ModelFamily.ZIMAGE).modes("turbo") == tuple(Mode)
    assert families.profile(ModelFamily.QWEN_IMAGE).modes() == tuple(Mode)
    assert families.profile(ModelFamily.SANA).modes() == (Mode.TXT2IMG,)
    assert families.profile(ModelFamily.SANA).modes("sprint") == (Mode.TXT2IMG, Mode.IMG2IMG)
    assert families.profile(ModelFamily.FLUX2).modes("distilled") == (Mode.TXT2IMG, Mode.INPAINT)
    with pytest.raises(EngineError) as err:
        families.profile(ModelFamily.SANA).pipeline_class(Mode.INPAINT, "")
    assert err.value.message == ("SANA models cannot do inpainting; choose another mode or model.")


def test_flux2_unpack_puts_back_the_32_vae_channels_diffusers_packed() -> None:
    width, height = 96, 64
    latents = torch.randn(1, 32, height // 8, width // 8)
    packed = Flux2KleinPipeline._pack_latents(Flux2KleinPipeline._patchify_latents(latents))
    assert packed.shape == (1, (height // 16) * (width // 16), 128)
    unpacked = flux2.unpack(packed[0].numpy(), width, height)
    np.testing.assert_array_equal(unpacked, latents[0].numpy())
    assert len(flux2.FLUX2_FACTORS[0]) == unpacked.shape[0]


def test_qwen_image_unpack_matches_diffusers_2x2_packing() -> None:
    width, height = 96, 64
    latents = torch.randn(1, 16, height // 8, width // 8)
    packed = QwenImagePipeline._pack_latents(latents, 1, 16, height // 8, width // 8)
    profile = families.profile(ModelFamily.QWEN_IMAGE)
    assert profile.unpack is not None
    np.testing.assert_array_equal(
        profile.unpack(packed[0].numpy(), width, height), latents[0].numpy()
    )


class _LinearVAE(torch.nn.Module):
    """An 'autoencoder' whose latents are a known linear mix of the block colours."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.mix = torch.nn.Parameter(torch.randn(5, 3))
        self.config = SimpleNamespace(scaling_factor=0.5, shift_factor=None)

    def encode(self, x: torch.Tensor) -> SimpleNamespace:
        pooled = torch.nn.functional.avg_pool2d(x, self.scale)
        return SimpleNamespace(latent=torch.einsum("bchw,lc->blhw", pooled, self.mix) + 0.3)


def test_fitted_preview_factors_give_back_the_colours_a_linear_encoder_mixed() -> None:
    torch.manual_seed(0)
    vae = _LinearVAE(scale=4)
    factors = fit_latent_rgb(vae, 4)
    colours = torch.tensor([[0.8, -0.5, 0.1], [-1.0, 1.0, 0.0]]).T.reshape(3, 1, 2)
    latents = vae.encode(colours.repeat_interleave(4, 1).repeat_interleave(4, 2)[None]).latent
    rgb = LatentRGB(factors)(latents * 0.5)  # the pipeline's space: scaling 0.5
    expected = ((colours.permute(1, 2, 0).numpy() + 1) * 127.5 + 0.5).astype(np.uint8)
    assert np.abs(rgb.astype(int) - expected.astype(int)).max() <= 1


def test_a_sana_model_without_published_factors_gets_them_fitted_on_its_own_vae() -> None:
    pipe = tiny_family_pipeline("sana")
    factors, bias = fit_latent_rgb(pipe.vae, int(pipe.vae_scale_factor))
    assert len(factors) == 4 and all(len(row) == 3 for row in factors) and len(bias) == 3
    assert not families.profile(ModelFamily.SANA).latent_rgb[0]  # fitted, not shipped


def test_qwen_image_guidance_is_true_cfg_with_a_blank_negative_prompt_when_none_is_given() -> None:
    args = {"guidance_scale": 4.0, "negative_prompt": None, "prompt": "a cat"}
    out = qwen_image.call_arguments(None, args, "")
    assert out["true_cfg_scale"] == 4.0 and "guidance_scale" not in out
    assert out["negative_prompt"] == " "
    kept = qwen_image.call_arguments(None, dict(args, negative_prompt="blurry"), "")
    assert kept["negative_prompt"] == "blurry"
    unguided = qwen_image.call_arguments(None, dict(args, guidance_scale=1.0), "")
    assert unguided["negative_prompt"] is None


def test_sana_asks_for_the_exact_size_and_sprint_drops_what_it_cannot_take() -> None:
    args = {"num_inference_steps": 20, "negative_prompt": "blurry"}
    assert sana.call_arguments(None, args, "") == dict(args, use_resolution_binning=False)
    sprint = sana.call_arguments(None, dict(args, num_inference_steps=4), "sprint")
    assert "negative_prompt" not in sprint and sprint["intermediate_timesteps"] is None
    two = sana.call_arguments(None, dict(args, num_inference_steps=2), "sprint")
    assert "intermediate_timesteps" not in two  # the pipeline's own midpoint


def test_klein_base_gets_the_negative_prompt_as_embeddings_and_distilled_klein_none() -> None:
    pipe = tiny_family_pipeline("flux2-klein-base")
    args = {"prompt": "a cat", "negative_prompt": "blurry", "guidance_scale": 4.0}
    with torch.inference_mode():
        out = flux2.call_arguments(pipe, args, "base")
        expected, _ = pipe.encode_prompt(prompt="blurry", device=torch.device("cpu"))
    assert "negative_prompt" not in out
    torch.testing.assert_close(out["negative_prompt_embeds"], expected)
    assert flux2.call_arguments(pipe, args, "distilled") == {
        "prompt": "a cat",
        "guidance_scale": 4.0,
    }


def test_fitted_factors_are_kept_for_the_next_load_of_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine import latent_fit

    monkeypatch.setenv("DIFFUSIONDESK_DATA", str(tmp_path / "data"))
    folder = save_tiny_family("sana", tmp_path / "sana")
    vae = tiny_family_pipeline("sana").vae
    first = latent_fit.cached_fit(vae, 32, folder)
    fits: list[object] = []
    monkeypatch.setattr(latent_fit, "fit_latent_rgb", lambda *a: fits.append(a) or first)
    assert latent_fit.cached_fit(vae, 32, folder) == first
    assert fits == []  # read back, not fitted again
    (folder / "vae" / "config.json").write_text((folder / "vae" / "config.json").read_text() + " ")
    latent_fit.cached_fit(vae, 32, folder)
    assert len(fits) == 1  # a changed VAE file is fitted again
