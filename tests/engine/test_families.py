"""The family registry (engine/families/): detection from folder files, pipelines per
mode and variant, defaults, and the FLUX unpack rule against diffusers' own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline

from engine import families
from engine.api import EngineError, ErrorKind, GuidanceKind, Mode, ModelFamily
from engine.families import FolderFacts
from engine.schedulers import max_steps_for


def facts(class_name: str, **configs: dict[str, object]) -> FolderFacts:
    index: dict[str, object] = {"_class_name": class_name}
    for component in configs:
        index[component] = ["diffusers", "X"]
    return FolderFacts(index, configs, name="some/model")


@pytest.mark.parametrize(
    ("found", "family", "variant"),
    [
        (facts("StableDiffusionPipeline", text_encoder={"hidden_size": 768}), "sd1", ""),
        (facts("StableDiffusionPipeline", text_encoder={"hidden_size": 1024}), "sd2", ""),
        (facts("StableDiffusionXLPipeline"), "sdxl", ""),
        (facts("StableDiffusion3Pipeline", transformer={"num_layers": 24}), "sd3", ""),
        (
            facts("StableDiffusion3Pipeline", transformer={"dual_attention_layers": [0, 1]}),
            "sd3",
            "3.5-medium",
        ),
        (
            facts(
                "StableDiffusion3Pipeline", transformer={"qk_norm": "rms_norm", "num_layers": 38}
            ),
            "sd3",
            "3.5-large",
        ),
        (facts("FluxPipeline", transformer={"guidance_embeds": True}), "flux1", "dev"),
        (facts("FluxPipeline", transformer={"guidance_embeds": False}), "flux1", "schnell"),
        (facts("FluxPipeline", transformer={"in_channels": 384}), "flux1", "fill"),
        (facts("FluxFillPipeline"), "flux1", "fill"),
    ],
)
def test_a_folder_names_its_family_and_variant(
    found: FolderFacts, family: str, variant: str
) -> None:
    profile, name = families.detect(found)
    assert (profile.family, name) == (family, variant)


def test_a_turbo_sd35_large_is_told_by_its_name_and_runs_unguided() -> None:
    turbo = FolderFacts(
        {"_class_name": "StableDiffusion3Pipeline", "transformer": ["diffusers", "X"]},
        {"transformer": {"qk_norm": "rms_norm", "num_layers": 38}},
        name="stabilityai/stable-diffusion-3.5-large-turbo",
    )
    profile, variant = families.detect(turbo)
    assert variant == "3.5-large-turbo"
    assert profile.variant(variant).guidance is GuidanceKind.NONE
    assert profile.variant(variant).steps == 4


def test_a_unet_folder_with_a_custom_pipeline_name_still_loads_as_stable_diffusion() -> None:
    profile, _ = families.detect(facts("MyOwnPipeline", unet={}))
    assert profile.family is ModelFamily.SD1


def test_an_unknown_pipeline_is_refused_with_the_families_that_run() -> None:
    with pytest.raises(EngineError) as err:
        families.detect(facts("KandinskyV22Pipeline"), "someone/kandinsky")
    assert err.value.kind is ErrorKind.MODEL
    assert "someone/kandinsky is a KandinskyV22Pipeline" in err.value.message
    assert "FLUX.1" in err.value.message


def test_folder_facts_reads_the_component_configs(tmp_path: Path) -> None:
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"in_channels": 384}))
    index = {"_class_name": "FluxPipeline", "transformer": ["diffusers", "X"]}
    profile, variant = families.detect(families.folder_facts(tmp_path, index))
    assert (profile.family, variant) == ("flux1", "fill")


def test_the_pipelines_per_mode_are_the_familys_diffusers_classes() -> None:
    flux = families.profile(ModelFamily.FLUX1)
    assert flux.pipeline_class(Mode.TXT2IMG, "dev").__name__ == "FluxPipeline"
    assert flux.pipeline_class(Mode.INPAINT, "dev").__name__ == "FluxInpaintPipeline"
    assert flux.pipeline_class(Mode.INPAINT, "fill").__name__ == "FluxFillPipeline"
    assert flux.modes("fill") == (Mode.INPAINT,)
    sd3 = families.profile(ModelFamily.SD3)
    assert sd3.pipeline_class(Mode.INPAINT).__name__ == "StableDiffusion3InpaintPipeline"
    sdxl = families.profile(ModelFamily.SDXL)
    assert sdxl.pipeline_class(Mode.IMG2IMG).__name__ == "StableDiffusionXLImg2ImgPipeline"


def test_a_mode_a_variant_lacks_is_bad_input_naming_the_variant() -> None:
    with pytest.raises(EngineError) as err:
        families.profile(ModelFamily.FLUX1).pipeline_class(Mode.TXT2IMG, "fill")
    assert err.value.kind is ErrorKind.BAD_INPUT
    assert err.value.message.startswith("FLUX.1 Fill models cannot do text to image")


@pytest.mark.parametrize("profile", list(families.PROFILES.values()), ids=str)
def test_every_variants_defaults_fit_its_family(profile: families.FamilyProfile) -> None:
    # No rows: fitted on the loaded VAE (engine/latent_fit.py), as for SANA's DC-AE.
    assert len(profile.latent_rgb[0]) in (0, profile.latent_channels)
    assert all(len(row) == 3 for row in profile.latent_rgb[0])
    for variant in profile.variants:
        assert variant.scheduler in profile.samplers_for(variant.name)
        assert 1 <= variant.steps <= max_steps_for(variant.scheduler.value)
        assert variant.width % 16 == 0 and variant.height % 16 == 0
        assert profile.modes(variant.name)


def test_a_family_without_a_profile_yet_gets_a_clear_message() -> None:
    missing = [f for f in ModelFamily if f not in families.PROFILES]
    for family in missing:
        with pytest.raises(EngineError) as err:
            families.profile(family)
        assert "not supported by this version" in err.value.message


def test_unpacking_flux_latents_equals_diffusers_own_unpack() -> None:
    width, height = 96, 64
    packed = torch.randn(1, (height // 16) * (width // 16), 64)
    expected = FluxPipeline._unpack_latents(packed, height, width, vae_scale_factor=8)[0]
    unpack = families.profile(ModelFamily.FLUX1).unpack
    assert unpack is not None
    np.testing.assert_array_equal(unpack(packed[0].numpy(), width, height), expected.numpy())


def test_the_registry_imports_no_torch() -> None:
    code = "import sys, engine.families; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
