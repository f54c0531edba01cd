"""Add-ons in the PNG's parameters as A1111 writes them (clip skip, LoRA/TI/VAE hashes
computed as A1111 computes them), read back into the form, and which of a picture's
add-ons this machine lacks."""

from __future__ import annotations

import hashlib

import torch
from PIL import Image
from safetensors.torch import save_file

from engine import metadata
from engine.addons.hashes import format_hashes, parse_hashes
from engine.api import GenerationRequest


def addnet_hash(path) -> str:
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + header :]).hexdigest()[:12]


def full_hash(path, digits: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:digits]


def folders(models_root):
    lora = models_root / "Lora" / "detail.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.ones(2, 2)}, str(lora), {"a": "b"})
    ti = models_root.parent / "embeddings" / "shiny.safetensors"
    save_file({"emb_params": torch.ones(1, 4)}, str(ti))
    vae = models_root / "VAE" / "ft-mse.safetensors"
    save_file({"decoder.conv_in.weight": torch.ones(1)}, str(vae))
    return lora, ti, vae


def made_with(models_root) -> GenerationRequest:
    return GenerationRequest(
        prompt="a shiny circle <lora:detail:0.8>",
        negative_prompt="dark",
        seed=3,
        clip_skip=2,
        vae="ft-mse",
        model_folders=(str(models_root),),
    )


def test_the_parameters_carry_clip_skip_and_hashes_as_a1111_writes_them(models_root):
    lora, ti, vae = folders(models_root)
    text = metadata.format_a1111(made_with(models_root), 3)
    assert text.startswith("a shiny circle <lora:detail:0.8>\nNegative prompt: dark\n")
    _, _, fields = metadata.parse_a1111_fields(text)
    assert fields["Clip skip"] == "2"
    assert fields["Lora hashes"] == f"detail: {addnet_hash(lora)}"
    assert fields["TI hashes"] == f"shiny: {full_hash(ti, 12)}"
    assert fields["VAE hash"] == full_hash(vae, 10)
    assert fields["VAE"] == "ft-mse.safetensors"
    assert addnet_hash(lora) != full_hash(lora, 12)  # the header really is skipped


def test_a_png_round_trip_gives_back_clip_skip_vae_and_the_lora_tags(models_root, tmp_path):
    folders(models_root)
    request = made_with(models_root)
    path = metadata.save_png(Image.new("RGB", (8, 8)), tmp_path / "p.png", request, 3)
    back = metadata.read_parameters(path)
    assert back.prompt == request.prompt and back.clip_skip == 2 and back.vae == "ft-mse"
    assert back.model_folders == ()  # this machine's folders are not stored
    a1111 = metadata.parse_a1111(metadata.read_texts(path)["parameters"])
    assert a1111.clip_skip == 2 and a1111.vae == "ft-mse.safetensors"
    assert "<lora:detail:0.8>" in a1111.prompt


def test_the_form_is_told_which_addons_are_not_on_this_machine(models_root, tmp_path):
    lora, ti, vae = folders(models_root)
    path = metadata.save_png(
        Image.new("RGB", (8, 8)), tmp_path / "p.png", made_with(models_root), 3
    )
    assert metadata.missing_addons(path, (str(models_root),)) == []
    elsewhere = tmp_path / "other" / "models"
    (elsewhere / "Lora").mkdir(parents=True)
    missing = metadata.missing_addons(path, (str(elsewhere),))
    assert missing == [
        "the LoRA detail is not in the LoRA folders",
        "the embedding shiny is not in the embeddings folders",
        "the VAE ft-mse.safetensors is not in the VAE folders",
    ]
    save_file(
        {"lora_unet_y.lora_down.weight": torch.zeros(2, 2)},
        str(elsewhere / "Lora" / "detail.safetensors"),
    )
    assert metadata.missing_addons(path, (str(elsewhere),))[0].startswith(
        "the LoRA detail here is a different file"
    )


def test_clip_skip_one_is_not_written_as_in_a1111():
    text = metadata.format_a1111(GenerationRequest(prompt="x"), 1)
    assert "Clip skip" not in text and "VAE" not in text


def test_hash_lists_take_separators_out_of_names_and_read_back():
    text = format_hashes({"a:b": "123", "c,d": "456"})
    assert text == "ab: 123, cd: 456"
    assert parse_hashes(text) == {"ab": "123", "cd": "456"}
