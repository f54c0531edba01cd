"""Telling text encoders and VAEs apart by their tensor names alone, and finding them in
the folders ComfyUI, A1111 and DiffusionDesk keep them in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine import component_files as cf

CLIP_L = cf.Slot("text_encoder", cf.CLIP, "clip_l", "the CLIP-L text encoder")
CLIP_G = cf.Slot("text_encoder_2", cf.CLIP, "clip_g", "the CLIP-G text encoder")


def _write(path: Path, names: dict[str, tuple[int, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(shape) for k, shape in names.items()}, path)
    return path


def clip(path: Path, width: int, prefix: str = "text_model.") -> Path:
    return _write(path, {f"{prefix}embeddings.token_embedding.weight": (10, width)})


@pytest.mark.parametrize(
    ("names", "kind", "width", "prefix"),
    [
        ({"text_model.embeddings.token_embedding.weight": (10, 768)}, cf.CLIP, 768, ""),
        ({"embeddings.token_embedding.weight": (10, 1280)}, cf.CLIP, 1280, ""),
        (
            {
                "text_encoders.clip_g.transformer.text_model.embeddings.token_embedding.weight": (
                    10,
                    8,
                )
            },
            cf.CLIP,
            8,
            "text_encoders.clip_g.transformer.",
        ),
        ({"encoder.block.0.layer.0.SelfAttention.q.weight": (64, 4096)}, cf.T5, 4096, ""),
        (
            {"model.embed_tokens.weight": (10, 3584), "visual.blocks.0.attn.qkv.weight": (3, 3)},
            cf.QWEN25_VL,
            3584,
            "",
        ),
        (
            {
                "model.embed_tokens.weight": (10, 2560),
                "model.layers.0.self_attn.q_norm.weight": (8,),
            },
            cf.QWEN3,
            2560,
            "",
        ),
        (
            {
                "model.embed_tokens.weight": (10, 2304),
                "model.layers.0.pre_feedforward_layernorm.weight": (8,),
            },
            cf.GEMMA2,
            2304,
            "",
        ),
        (
            {"encoder.conv_out.weight": (32, 8, 3, 3), "decoder.conv_in.weight": (8, 16, 3, 3)},
            "vae",
            16,
            "",
        ),
        (
            {
                "first_stage_model.encoder.conv_out.weight": (8, 8, 3, 3),
                "first_stage_model.decoder.conv_in.weight": (8, 4, 3, 3),
            },
            "vae",
            4,
            "first_stage_model.",
        ),
        ({"lora_unet_down.lora_down.weight": (4, 4)}, "", 0, ""),
    ],
    ids=[
        "clip-l",
        "clip-g-bare",
        "sd3-prefix",
        "t5",
        "qwen2.5-vl",
        "qwen3",
        "gemma2",
        "vae16",
        "vae4",
        "lora",
    ],
)
def test_a_files_kind_width_and_prefix_come_from_its_names(
    tmp_path: Path, names: dict, kind: str, width: int, prefix: str
) -> None:
    found = cf.inspect(_write(tmp_path / "x.safetensors", names))
    assert (found.kind, found.width, found.prefix) == (kind, width, prefix)


def test_an_unreadable_file_is_nothing_rather_than_an_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 3)
    assert cf.inspect(junk).kind == ""


def test_comfyui_and_diffusiondesk_folders_are_searched_in_order(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI" / "models"
    model = _write(comfy / "unet" / "flux" / "flux1-dev.safetensors", {"x": (1,)})
    beside = clip(model.parent / "clip_l.safetensors", 768)
    in_clip = clip(comfy / "clip" / "openai" / "clip_l.safetensors", 768)  # a sub-folder
    own = tmp_path / "DiffusionDesk" / "models"
    in_own = clip(own / "text_encoders" / "clip_g.safetensors", 1280)

    found = [f.path for f in cf.candidates(cf.AssetKind.TEXT_ENCODER, model, [own])]
    assert found == [beside, in_clip, in_own]
    assert model not in found


def test_the_slots_width_decides_and_the_name_breaks_ties(tmp_path: Path) -> None:
    l_file = cf.inspect(clip(tmp_path / "clip_l.safetensors", 16))
    g_file = cf.inspect(clip(tmp_path / "clip_g.safetensors", 16))
    wide = cf.inspect(clip(tmp_path / "ViT-L.safetensors", 768))
    assert cf.choose(CLIP_L, 16, [g_file, l_file, wide]) == l_file
    assert cf.choose(CLIP_G, 16, [l_file, g_file, wide]) == g_file
    assert cf.choose(CLIP_L, 768, [l_file, g_file, wide]) == wide
    assert cf.choose(CLIP_L, 1280, [l_file, g_file, wide]) is None


def test_an_all_in_one_files_parts_are_listed(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "sd3_incl_clips.safetensors",
        {
            "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (3, 1),
            "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight": (4, 8),
            "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight": (
                4,
                32,
            ),
            "first_stage_model.encoder.conv_out.weight": (32, 8, 3, 3),
            "first_stage_model.decoder.conv_in.weight": (8, 16, 3, 3),
        },
    )
    parts = {(p.kind, p.prefix) for p in cf.embedded(path)}
    assert parts == {
        (cf.CLIP, "text_encoders.clip_l.transformer."),
        (cf.T5, "text_encoders.t5xxl.transformer."),
        ("vae", "first_stage_model."),
    }
