"""Other tools' pictures: their settings come back as far as each format says."""

from __future__ import annotations

import json
from pathlib import Path

import picture_samples as samples
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.api import GenerationRequest
from engine.foreign_metadata import (
    PictureSettings,
    our_sampler,
    picture_texts,
    read_picture_settings,
)
from engine.metadata import read_parameters
from engine.picture_files import save_picture

A1111_VALUES = {
    "prompt": "a castle on a hill, (golden hour:1.2)",
    "negative_prompt": "blurry, lowres",
    "seed": 1234567890,
    "steps": 28,
    "guidance_scale": 6.5,
    "scheduler": "DPM++ 2M Karras",
    "width": 512,
    "height": 768,
}
COMFY_VALUES = {
    "prompt": "a red fox in snow",
    "negative_prompt": "watermark",
    "seed": 987654321012,
    "steps": 30,
    "guidance_scale": 7.5,
    "scheduler": "Euler a",
    "width": 832,
    "height": 1216,
}
FOOOCUS_VALUES = {
    "prompt": "portrait of an astronaut",
    "negative_prompt": "ugly",
    "seed": 777,
    "steps": 30,
    "guidance_scale": 4.0,
    "scheduler": "DPM++ SDE",
    "width": 896,
    "height": 1152,
}
SWARM_VALUES = {
    "prompt": "a bowl of ramen, studio photo",
    "negative_prompt": "text",
    "seed": 55,
    "steps": 24,
    "guidance_scale": 6.0,
    "scheduler": "DPM++ 2M Karras",
    "width": 1024,
    "height": 1024,
}
DRAW_THINGS_VALUES = {
    "prompt": "a paper boat on a puddle",
    "negative_prompt": "blurry",
    "seed": 2718281828,
    "steps": 32,
    "guidance_scale": 5.0,
    "scheduler": "DPM++ 2M Karras",
    "width": 1024,
    "height": 768,
}
INVOKE_VALUES = {
    "prompt": "a lighthouse at dusk",
    "negative_prompt": "people",
    "seed": 4242,
    "steps": 25,
    "guidance_scale": 5.5,
    "scheduler": "DPM++ 2M Karras",
    "width": 768,
    "height": 512,
}
NOVELAI_VALUES = {
    "prompt": "1girl, library, reading",
    "negative_prompt": "lowres, bad anatomy",
    "seed": 3141592653,
    "steps": 28,
    "guidance_scale": 5.0,
    "scheduler": "Euler a",
    "width": 832,
    "height": 1216,
}

CASES = [
    # (tool builder, formats the tool writes, tool name, values, model name)
    (samples.a1111, ("png", "jpg", "webp"), "AUTOMATIC1111", A1111_VALUES, "dreamshaper_8"),
    (
        samples.comfyui,
        ("png", "jpg", "webp"),
        "ComfyUI",
        COMFY_VALUES,
        "sdxl/juggernautXL.safetensors",
    ),
    (
        samples.fooocus,
        ("png", "jpg", "webp"),
        "Fooocus",
        FOOOCUS_VALUES,
        "juggernautXL_v8Rundiffusion.safetensors",
    ),
    (
        samples.swarmui,
        ("png", "jpg", "webp"),
        "SwarmUI",
        SWARM_VALUES,
        "OfficialStableDiffusion/sd_xl_base_1.0",
    ),
    (
        samples.draw_things,
        ("png", "jpg", "webp"),
        "Draw Things",
        DRAW_THINGS_VALUES,
        "sd_xl_base_1.0_f16.ckpt",
    ),
    (samples.invokeai, ("png",), "InvokeAI", INVOKE_VALUES, "Juggernaut XL v9"),
    (samples.novelai, ("png",), "NovelAI", NOVELAI_VALUES, "Stable Diffusion XL C1E1DE52"),
]
PARAMS = [
    pytest.param(build, suffix, tool, values, model, id=f"{tool}-{suffix}")
    for build, suffixes, tool, values, model in CASES
    for suffix in suffixes
]


@pytest.mark.parametrize(("build", "suffix", "tool", "values", "model"), PARAMS)
def test_each_tools_picture_gives_back_its_settings(
    tmp_path: Path,
    build,
    suffix: str,
    tool: str,
    values: dict,
    model: str,
) -> None:
    path = build(tmp_path / f"picture.{suffix}")

    found = read_picture_settings(path)

    assert found is not None, (
        f"nothing read from {tool} {suffix}: {picture_texts(Image.open(path))}"
    )
    assert found.tool == tool
    assert dict(found.values) == values
    assert found.model_name == model
    assert found.left_out == ()


def test_forge_and_sdnext_are_told_apart_from_a1111(tmp_path: Path) -> None:
    forge = read_picture_settings(
        samples.a1111(tmp_path / "f.png", version="f2.0.1v1.10.1-previous-313")
    )
    sdnext = read_picture_settings(
        samples.a1111(tmp_path / "n.webp", version="2f7a6c4", extra=", App: SD.Next")
    )
    assert forge is not None and forge.tool == "Forge"
    assert sdnext is not None and sdnext.tool == "SD.Next"
    assert forge.values == sdnext.values == A1111_VALUES


def test_a_comfyui_api_save_without_a_workflow_still_reads(tmp_path: Path) -> None:
    found = read_picture_settings(samples.comfyui(tmp_path / "api.png", with_workflow=False))
    assert found is not None and dict(found.values) == COMFY_VALUES


def test_the_model_name_goes_into_the_form_only_when_the_library_has_it(tmp_path: Path) -> None:
    path = samples.a1111(tmp_path / "a.png")
    library = {"dreamshaper_8": "/models/checkpoints/dreamshaper_8.safetensors"}

    found = read_picture_settings(path, resolve_model=library.get)
    missing = read_picture_settings(path, resolve_model=lambda name: None)

    assert found is not None and found.values["model"] == library["dreamshaper_8"]
    assert missing is not None and "model" not in missing.values
    assert any("dreamshaper_8" in s and "not in your model library" in s for s in missing.left_out)


def test_only_stated_values_change_the_form(tmp_path: Path) -> None:
    path = samples.save(tmp_path / "p.png", png_texts={"parameters": "just a prompt"})
    base = GenerationRequest(prompt="old", steps=7, seed=3, width=256, height=192, model="m")

    found = read_picture_settings(path)

    assert found is not None and dict(found.values) == {"prompt": "just a prompt"}
    request = found.apply_to(base)
    assert (request.prompt, request.steps, request.seed, request.width, request.model) == (
        "just a prompt",
        7,
        3,
        256,
        "m",
    )


@pytest.mark.parametrize("suffix", ["png", "jpg", "webp"])
def test_a_picture_without_settings_says_so(tmp_path: Path, suffix: str) -> None:
    plain = samples.save(tmp_path / f"plain.{suffix}")
    blank = samples.save(
        tmp_path / f"blank.{suffix}",
        png_texts={"parameters": "   ", "Software": "GIMP"},
        user_comment=samples.unicode_comment("  "),
    )
    assert read_picture_settings(plain) is None
    assert read_picture_settings(blank) is None


@pytest.mark.parametrize(
    ("texts", "left_out"),
    [
        (
            {"parameters": "cat\nSteps: 20, Sampler: Euler, Seed: -1, Size: 513x512"},
            ["seed", "size"],
        ),
        (
            {"parameters": "cat\nSteps: 0, Sampler: Heun++ 9000, CFG scale: nan"},
            ["steps", "sampler", "guidance"],
        ),
        (
            {"parameters": "cat\nSteps: 1e999, Sampler: Euler, Seed: 99999999999999999999999999"},
            ["steps", "seed"],
        ),
    ],
)
def test_values_the_form_cannot_take_are_left_out_with_a_reason(
    tmp_path: Path, texts: dict[str, str], left_out: list[str]
) -> None:
    found = read_picture_settings(samples.save(tmp_path / "x.png", png_texts=texts))
    assert found is not None and found.values["prompt"] == "cat"
    reasons = " ".join(found.left_out).lower()
    for word in left_out:
        assert word in reasons
    assert not {"width", "height"} & found.values.keys() or "size" not in left_out


HOSTILE = [
    {"prompt": "{" * 100_000},
    {"prompt": "[" * 5000 + "]" * 5000, "workflow": "{}"},
    {
        "prompt": json.dumps(
            {
                "3": {
                    "class_type": "KSampler",
                    "inputs": {"seed": [], "steps": {}, "cfg": None, "sampler_name": 5},
                }
            }
        )
    },
    {
        "prompt": json.dumps({"1": None, "2": [], "3": "x"}),
        "workflow": json.dumps({"links": [[1, 2]]}),
    },
    {
        "invokeai_metadata": json.dumps(
            {"positive_prompt": 5, "seed": "x", "model": [], "width": -8}
        )
    },
    {"invokeai_metadata": "not json"},
    {"Comment": "{}", "Description": "", "Software": "NovelAI"},
    {"Comment": json.dumps({"sampler": None, "width": 1e308}), "Description": "x", "Source": "5"},
    {
        "parameters": json.dumps(
            {"sui_image_params": {"seed": 1e400, "width": "wide", "prompt": ["a"]}}
        )
    },
    {"parameters": json.dumps({"sui_image_params": None})},
    {
        "parameters": json.dumps({"base_model": None, "resolution": "(" * 500, "prompt": {}}),
        "fooocus_scheme": "fooocus",
    },
    {"parameters": "x" * 6_000_000},
    {"XML:com.adobe.xmp": "<x:xmpmeta><!ENTITY lol 'lol'>&lol;</x:xmpmeta>"},
    {"XML:com.adobe.xmp": "<x:xmpmeta " + "<a>" * 10000 + "</x:xmpmeta>"},
]


@pytest.mark.parametrize("texts", HOSTILE, ids=[f"hostile-{i}" for i in range(len(HOSTILE))])
def test_hostile_metadata_never_raises_and_never_fills_the_form_with_junk(
    tmp_path: Path, texts: dict[str, str]
) -> None:
    path = tmp_path / "h.png"
    image = Image.new("RGB", (8, 8))
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in texts.items():
        info.add_itxt(key, value) if key.startswith("XML") else info.add_text(key, value)
    image.save(path, pnginfo=info)

    found = read_picture_settings(path)

    if found is not None:
        request = found.apply_to(GenerationRequest(prompt="base"))
        from engine.validation import problems

        assert problems(request) == []
        assert all(isinstance(v, str | int | float) for v in found.values.values())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from(
        ["parameters", "prompt", "workflow", "invokeai_metadata", "Comment", "sd-metadata", "Dream"]
    ),
    text=st.one_of(
        st.text(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(json.dumps),
    ),
)
def test_any_text_in_any_chunk_reads_without_raising(key: str, text: str) -> None:
    image = Image.new("RGB", (8, 8))
    image.info[key] = text
    image.format = "PNG"
    found = read_picture_settings(image)
    assert found is None or isinstance(found, PictureSettings)


@pytest.mark.parametrize("suffix", ["jpg", "webp"])
def test_our_jpeg_and_webp_carry_the_parameters_as_a1111_writes_them(
    tmp_path: Path, suffix: str
) -> None:
    request = GenerationRequest(
        prompt="a tiny, red boat: día",
        negative_prompt="fog",
        steps=9,
        seed=77,
        guidance_scale=3.5,
        width=64,
        height=48,
        scheduler="Euler a",
    )
    path = save_picture(
        Image.new("RGBA", (64, 48), (200, 10, 10, 128)), tmp_path / f"o.{suffix}", request, 77
    )

    with Image.open(path) as image:
        assert image.format == ("JPEG" if suffix == "jpg" else "WEBP")
        raw = image.getexif().get_ifd(0x8769)[0x9286]
    assert raw.startswith(b"UNICODE\x00") and raw[8:].decode("utf-16-be").startswith(
        "a tiny, red boat"
    )
    back = read_parameters(path)
    assert back is not None
    assert (back.prompt, back.negative_prompt, back.steps, back.seed, back.scheduler) == (
        "a tiny, red boat: día",
        "fog",
        9,
        77,
        "Euler a",
    )
    assert (back.guidance_scale, back.width, back.height) == (3.5, 64, 48)
    found = read_picture_settings(path)
    assert found is not None and found.tool == "DiffusionDesk"
    from sd_parsers import ParserManager

    other = ParserManager().parse(path)  # what other tools' readers see
    assert other is not None and other.full_prompt == "a tiny, red boat: día"
    assert not list(tmp_path.glob("*.tmp"))


def test_saving_refuses_a_suffix_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png, \.jpg or \.webp"):
        save_picture(Image.new("RGB", (8, 8)), tmp_path / "x.gif", GenerationRequest(prompt="x"), 1)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "schedule", "ours"),
    [
        ("euler_ancestral", "normal", "Euler a"),
        ("dpmpp_2m", "karras", "DPM++ 2M Karras"),
        ("dpmpp_2m_k", "", "DPM++ 2M Karras"),
        ("k_euler_ancestral", "", "Euler a"),
        ("dpmpp_2m_sde_gpu", "karras", "DPM++ SDE"),
        ("Euler A Trailing", "", "Euler a"),
        ("uni_pc_bh2", "", "UniPC"),
        ("lcm", "sgm_uniform", "LCM"),
        ("ddim_v3", "", None),
    ],
)
def test_sampler_names_of_every_tool_map_to_ours(
    name: str, schedule: str, ours: str | None
) -> None:
    assert our_sampler(name, schedule) == ours


def test_a_comment_chunk_of_another_program_does_not_hide_a1111_settings(tmp_path: Path) -> None:
    text = samples.A1111_TEXT.format(version="v1.10.1")
    path = samples.save(
        tmp_path / "a.png",
        png_texts={"parameters": text, "Comment": "edited in GIMP", "Description": "holiday"},
    )
    found = read_picture_settings(path)
    assert (
        found is not None and found.tool == "AUTOMATIC1111" and dict(found.values) == A1111_VALUES
    )
