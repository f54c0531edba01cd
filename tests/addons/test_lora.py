"""LoRA files in kohya, diffusers/PEFT and LyCORIS layouts: merged exactly as defined,
weight 0 and removal give the base model's images bit for bit, and a LoRA that does not
fit the model is refused with a sentence that says so."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import TINY, TINY_SDXL, WAIT, request
from lora_files import (
    expected_weight,
    make_lora,
    write_kohya,
    write_locon,
    write_loha,
    write_peft,
)

from engine.addons.lora import LoraMerger, LoraUse, read_lora
from engine.api import EngineError, ErrorKind, Failed, Finished


def pipe_of(models, source=TINY):
    return models.get(source, lambda *_: None, lambda: False).pipe


def merger_for(pipe, family="sd1") -> LoraMerger:
    components = {n: getattr(pipe, n, None) for n in ("unet", "text_encoder", "text_encoder_2")}
    return LoraMerger({k: v for k, v in components.items() if v is not None}, family)


def module_weight(root: torch.nn.Module, name: str) -> torch.Tensor:
    modules = dict(root.named_modules())
    return modules.get(name, modules.get(name.removeprefix("text_model."))).weight


def product(layer) -> torch.Tensor:
    return layer.up.reshape(layer.up.shape[0], -1) @ layer.down.reshape(layer.down.shape[0], -1)


def generate(engine, **changes):
    result = engine.generate(request(**changes), WAIT)
    assert isinstance(result, Finished), result
    return np.asarray(result.images[0])


def test_a_kohya_lora_is_merged_as_w_plus_alpha_over_rank_times_up_down(own_models, tmp_path):
    pipe = pipe_of(own_models)
    lora = make_lora(pipe)
    path = write_kohya(lora, tmp_path / "k.safetensors", alpha=2.0)
    merger = merger_for(pipe)
    before = {(c, m): module_weight(getattr(pipe, c), m).clone() for c in lora for m in lora[c]}
    loaded = read_lora(path, "sd1", torch.float32)
    assert set(loaded.layers) == {"unet", "text_encoder"}
    merger.apply([(LoraUse("k", path, 0.8, 0.5), loaded)])
    try:
        for (component, module), weight in before.items():
            a, b = (t.half().float() for t in lora[component][module])
            scale = (0.8 if component == "unet" else 0.5) * 2.0 / a.shape[0]
            got = module_weight(getattr(pipe, component), module)
            assert torch.allclose(got, expected_weight(weight, a, b, scale), atol=1e-5), module
    finally:
        merger.restore()
    for (component, module), weight in before.items():
        assert torch.equal(module_weight(getattr(pipe, component), module), weight)


def test_the_peft_layout_reads_to_the_same_layers_as_kohya(own_models, tmp_path):
    pipe = pipe_of(own_models)
    lora = make_lora(pipe, seed=3)
    half = {
        c: {m: (a.half().float(), b.half().float()) for m, (a, b) in ls.items()}
        for c, ls in lora.items()
    }
    kohya = read_lora(
        write_kohya(half, tmp_path / "k.safetensors", alpha=2.0), "sd1", torch.float32
    )
    peft = read_lora(
        write_peft(half, tmp_path / "p.safetensors", lora_alpha=2.0), "sd1", torch.float32
    )
    for component, layers in kohya.layers.items():
        assert set(layers) == set(peft.layers[component])
        for name, layer in layers.items():
            other = peft.layers[component][name]
            assert torch.allclose(product(layer), product(other), atol=1e-6)


def test_a_lycoris_locon_merges_into_the_resnet_convolutions(own_models, tmp_path):
    pipe = pipe_of(own_models)
    path, lora = write_locon(pipe, tmp_path / "locon.safetensors")
    merger = merger_for(pipe)
    name, (a, b) = next(iter(lora["unet"].items()))
    weight = module_weight(pipe.unet, name).clone()
    merger.apply([(LoraUse("locon", path, 1.0, 1.0), read_lora(path, "sd1", torch.float32))])
    try:
        got = module_weight(pipe.unet, name)
        assert torch.allclose(got, expected_weight(weight, a.half(), b.half(), 1.0), atol=1e-5)
    finally:
        merger.restore()
    assert torch.equal(module_weight(pipe.unet, name), weight)


def test_a_loha_is_refused_with_a_sentence(tmp_path):
    with pytest.raises(EngineError) as err:
        read_lora(write_loha(tmp_path / "loha.safetensors"), "sd1", torch.float32)
    assert err.value.kind == ErrorKind.BAD_INPUT
    assert "LyCORIS LoHa" in err.value.message and "diffusers cannot load" in err.value.message


def test_bfloat16_weights_merge_and_restore_bit_for_bit(own_models, tmp_path):
    pipe = pipe_of(own_models)
    unet = type(pipe.unet).from_config(pipe.unet.config).to(torch.bfloat16)
    lora = {"unet": make_lora(pipe, text_encoder=False)["unet"]}
    path = write_kohya(lora, tmp_path / "k.safetensors")
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    merger = LoraMerger({"unet": unet}, "sd1")
    merger.apply([(LoraUse("k", path, 1.0, 1.0), read_lora(path, "sd1", torch.bfloat16))])
    changed = [k for k, v in unet.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len(lora["unet"])
    merger.restore()
    assert all(torch.equal(v, before[k]) for k, v in unet.state_dict().items())


@pytest.mark.slow
def test_weight_zero_and_removal_give_the_base_image_and_the_model_is_not_reloaded(
    addon_engine, own_models, models_root
):
    pipe = pipe_of(own_models)
    write_kohya(make_lora(pipe, seed=1), models_root / "Lora" / "detail.safetensors")
    write_peft(make_lora(pipe, seed=2), models_root / "Lora" / "style.safetensors")
    folders = (str(models_root),)
    unet_before = pipe.unet
    base = generate(addon_engine, model_folders=folders)
    zero = generate(addon_engine, prompt="a red circle <lora:detail:0>", model_folders=folders)
    assert np.array_equal(zero, base)
    one = generate(addon_engine, prompt="a red circle <lora:detail:1>", model_folders=folders)
    assert not np.array_equal(one, base)
    both = generate(
        addon_engine,
        prompt="a red circle <lora:detail:0.7> <lora:style:0.6:0.9>",
        model_folders=folders,
    )
    assert not np.array_equal(both, one)
    again = generate(addon_engine, prompt="a red circle <lora:detail:1>", model_folders=folders)
    assert np.array_equal(again, one)
    after = generate(addon_engine, model_folders=folders)
    assert np.array_equal(after, base)
    assert pipe_of(own_models).unet is unet_before


def test_a_missing_lora_fails_the_job_naming_it_and_the_engine_goes_on(addon_engine, models_root):
    result = addon_engine.generate(
        request(prompt="a cat <lora:nowhere:1>", model_folders=(str(models_root),)), WAIT
    )
    assert isinstance(result, Failed) and result.error == ErrorKind.BAD_INPUT
    assert "No LoRA file named nowhere" in result.message
    assert isinstance(addon_engine.generate(request(), WAIT), Finished)


def test_an_sd1_lora_on_an_sdxl_model_is_refused_naming_both(addon_engine, own_models, models_root):
    write_kohya(make_lora(pipe_of(own_models)), models_root / "Lora" / "sd1.safetensors")
    sdxl = pipe_of(own_models, TINY_SDXL)
    weights = {k: v.clone() for k, v in sdxl.unet.state_dict().items()}
    result = addon_engine.generate(
        request(prompt="a cat <lora:sd1:1>", model=TINY_SDXL, model_folders=(str(models_root),)),
        WAIT,
    )
    assert isinstance(result, Failed) and result.error == ErrorKind.BAD_INPUT
    assert "was made for Stable Diffusion 1.x and this model is SDXL" in result.message
    assert all(torch.equal(v, weights[k]) for k, v in sdxl.unet.state_dict().items())


def test_an_sdxl_kohya_lora_with_both_text_encoders_applies_to_sdxl(own_models, tmp_path):
    pipe = pipe_of(own_models, TINY_SDXL)
    lora = make_lora(pipe, seed=5)
    path = write_kohya(lora, tmp_path / "xl.safetensors", family="sdxl_base_v1-0", sdxl=True)
    loaded = read_lora(path, "sdxl", torch.float32)
    assert set(loaded.layers) == {"unet", "text_encoder", "text_encoder_2"}
    merger = merger_for(pipe, "sdxl")
    name = next(iter(lora["text_encoder_2"]))
    weight = module_weight(pipe.text_encoder_2, name).clone()
    merger.apply([(LoraUse("xl", path, 1.0, 1.0), loaded)])
    assert not torch.equal(module_weight(pipe.text_encoder_2, name), weight)
    merger.restore()
    assert torch.equal(module_weight(pipe.text_encoder_2, name), weight)


def test_a_lora_tag_that_names_a_path_is_refused(addon_engine, models_root):
    result = addon_engine.generate(
        request(prompt="a cat <lora:../../secret:1>", model_folders=(str(models_root),)), WAIT
    )
    assert isinstance(result, Failed) and "names a path" in result.message


def test_channels_last_bfloat16_convolutions_merge_and_restore_bit_for_bit(own_models, tmp_path):
    pipe = pipe_of(own_models)
    unet = type(pipe.unet).from_config(pipe.unet.config).to(torch.bfloat16)
    unet = unet.to(memory_format=torch.channels_last)
    path, lora = write_locon(pipe, tmp_path / "locon.safetensors")
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    merger = LoraMerger({"unet": unet}, "sd1")
    merger.apply([(LoraUse("locon", path, 1.0, 1.0), read_lora(path, "sd1", torch.bfloat16))])
    name, (a, b) = next(iter(lora["unet"].items()))
    got = module_weight(unet, name).float()
    want = expected_weight(before[f"{name}.weight"], a.half(), b.half(), 1.0)
    assert torch.allclose(got, want, atol=0.05)
    merger.restore()
    assert all(torch.equal(v, before[k]) for k, v in unet.state_dict().items())
