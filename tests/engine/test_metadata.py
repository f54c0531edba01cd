"""PNG parameters: A1111 "parameters" text plus our JSON record, written atomically."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine import metadata
from engine.api import GenerationRequest, ResumeFrom

A1111_SAMPLE = (
    "masterpiece, a cat sitting on a chair, (detailed fur:1.2),\n"
    "soft light\n"
    "Negative prompt: lowres, bad anatomy, text, watermark\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3870561722, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
    "Denoising strength: 0.55, Clip skip: 2, "
    'Lora hashes: "detail: 1234abcd, style: 5678ef90", Version: v1.10.1'
)


def image() -> Image.Image:
    return Image.new("RGB", (16, 8), (200, 30, 40))


def test_round_trip_through_our_json(tmp_path: Path) -> None:
    request = GenerationRequest(
        prompt='a red circle, "quoted", on a\nsecond line: 東京 ✓',
        negative_prompt="blurry, low quality\nNegative prompt: literally",
        steps=31,
        guidance_scale=6.5,
        seed=7,
        batch_size=2,
        width=136,
        height=96,
        scheduler="DPM++ 2M Karras",
        model="/models/my model, v2.safetensors",
        init_image=image(),
        strength=0.4,
        mask=Image.new("L", (136, 96), 255),
        mask_blur=6,
        inpaint_only_masked=True,
        inpaint_padding=16,
        resume=ResumeFrom(job_id=3, step=5),
    )
    path = metadata.save_png(image(), tmp_path / "out" / "a.png", request, seed=8)
    assert path == tmp_path / "out" / "a.png"
    back = metadata.read_parameters(path)
    assert back == request.with_changes(seed=8, init_image=None, mask=None)
    # The A1111 text in the same file says the same things.
    texts = metadata.read_texts(path)
    assert set(texts) >= {"parameters", "diffusiondesk"}
    from_text = metadata.parse_a1111(texts["parameters"])
    assert from_text.prompt == request.prompt
    assert from_text.negative_prompt == request.negative_prompt
    assert (from_text.steps, from_text.guidance_scale, from_text.seed) == (31, 6.5, 8)
    assert (from_text.width, from_text.height) == (136, 96)
    assert from_text.scheduler == "DPM++ 2M Karras"
    assert (from_text.strength, from_text.mask_blur, from_text.batch_size) == (0.4, 6, 2)
    assert from_text.inpaint_only_masked and from_text.inpaint_padding == 16
    record = json.loads(texts["diffusiondesk"])
    assert record["mode"] == "inpaint" and record["has_mask"] and record["has_init_image"]


def test_a1111_text_layout() -> None:
    request = GenerationRequest(prompt="a cat", negative_prompt="dog", seed=1)
    text = metadata.format_a1111(request, seed=123)
    assert text.splitlines() == [
        "a cat",
        "Negative prompt: dog",
        "Steps: 20, Sampler: DPM++ 2M, CFG scale: 5.0, Seed: 123, Size: 128x128, "
        "Model: starter, Version: DiffusionDesk",
    ]
    no_negative = metadata.format_a1111(request.with_changes(negative_prompt=""), seed=1)
    assert "Negative prompt" not in no_negative
    img2img = metadata.format_a1111(request.with_changes(init_image=image()), seed=1)
    assert "Denoising strength: 0.75" in img2img
    assert "Model: my-model," in metadata.format_a1111(
        request.with_changes(model="/x/my-model.safetensors"), seed=1
    )
    assert "Model: stabilityai/sd-turbo," in metadata.format_a1111(
        request.with_changes(model="stabilityai/sd-turbo"), seed=1
    )


def test_reads_a_png_written_by_automatic1111(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("parameters", A1111_SAMPLE)
    path = tmp_path / "00001-3870561722.png"
    image().save(path, pnginfo=info)
    request = metadata.read_parameters(path)
    assert request is not None
    assert (
        request.prompt == "masterpiece, a cat sitting on a chair, (detailed fur:1.2),\nsoft light"
    )
    assert request.negative_prompt == "lowres, bad anatomy, text, watermark"
    assert request.steps == 28
    assert request.scheduler == "DPM++ 2M Karras"
    assert request.guidance_scale == 6.5
    assert request.seed == 3870561722
    assert (request.width, request.height) == (512, 768)
    assert request.strength == 0.55
    assert request.model == "starter"  # other tools' model names are not paths we can open


def test_reads_older_a1111_text_and_ignores_unknown_keys() -> None:
    text = (
        "portrait of a knight\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Face restoration: CodeFormer, "
        "Size: 512x512, Model hash: 925997e9, Hires upscale: 2, Hires steps: 10, "
        "Hires upscaler: Latent, Denoising strength: 0.7, ENSD: 31337"
    )
    request = metadata.parse_a1111(text)
    assert request.prompt == "portrait of a knight"
    assert request.negative_prompt == ""
    assert request.scheduler == "Euler a"
    assert (request.steps, request.guidance_scale, request.seed) == (20, 7.0, 42)
    assert request.strength == GenerationRequest(prompt="").strength  # hires pass, not ours


def test_prompt_without_a_parameters_line() -> None:
    request = metadata.parse_a1111("just a prompt, with commas: and a colon")
    assert request.prompt == "just a prompt, with commas: and a colon"
    assert request.steps == GenerationRequest(prompt="").steps


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        ("Euler a", "Euler a"),
        ("Euler", "Euler"),
        ("DPM++ 2M", "DPM++ 2M"),
        ("DPM++ 2M Karras", "DPM++ 2M Karras"),
        ("dpmpp_2m_karras", "DPM++ 2M Karras"),
        ("euler_ancestral", "Euler a"),
        ("DPM++ SDE Karras", "DPM++ SDE"),
        ("DPM++ 2M SDE", "DPM++ SDE"),
        ("DDIM", "DDIM"),
        ("UniPC", "UniPC"),
        ("LCM", "LCM"),
        ("DPM2 a Karras", "Euler a"),
        ("Heun", "Euler"),
    ],
)
def test_sampler_names_of_other_tools(theirs: str, ours: str) -> None:
    assert metadata.sampler_from_name(theirs) == ours


def test_unknown_sampler_keeps_the_default() -> None:
    text = "x\nSteps: 5, Sampler: Quantum Annealer, CFG scale: 3, Seed: 1"
    assert metadata.parse_a1111(text).scheduler == GenerationRequest(prompt="").scheduler


def test_json_record_wins_and_tolerates_future_keys(tmp_path: Path) -> None:
    record = metadata.to_record(GenerationRequest(prompt="from json", steps=9), seed=5)
    record["some_future_field"] = {"a": 1}
    info = PngInfo()
    info.add_text("parameters", "from text\nSteps: 3, Sampler: Euler, CFG scale: 1, Seed: 2")
    info.add_text("diffusiondesk", json.dumps(record))
    path = tmp_path / "x.png"
    image().save(path, pnginfo=info)
    request = metadata.read_parameters(path)
    assert request is not None and request.prompt == "from json" and request.steps == 9


def test_broken_json_falls_back_to_the_a1111_text(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("parameters", "from text\nSteps: 3, Sampler: Euler, CFG scale: 1, Seed: 2")
    info.add_text("diffusiondesk", "{not json")
    path = tmp_path / "x.png"
    image().save(path, pnginfo=info)
    request = metadata.read_parameters(path)
    assert request is not None and request.prompt == "from text" and request.seed == 2


def test_images_without_parameters(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    image().save(path)
    assert metadata.read_parameters(path) is None
    assert metadata.read_parameters(image()) is None


def test_reads_an_open_image_too(tmp_path: Path) -> None:
    path = metadata.save_png(image(), tmp_path / "a.png", GenerationRequest(prompt="p"), seed=1)
    with Image.open(path) as opened:
        request = metadata.read_parameters(opened)
    assert request is not None and request.seed == 1


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.png"
    metadata.save_png(image(), path, GenerationRequest(prompt="old"), seed=1)
    before = path.read_bytes()

    def fail_halfway(self: Image.Image, fp, *args, **kwargs) -> None:
        fp.write(b"\x89PNG\r\n\x1a\n half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail_halfway)
    with pytest.raises(OSError, match="disk full"):
        metadata.save_png(image(), path, GenerationRequest(prompt="new"), seed=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temp file left


def test_metadata_does_not_import_torch() -> None:
    code = "import sys, engine.metadata; sys.exit('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


@pytest.mark.parametrize(("fmt", "encoding"), [("JPEG", "utf_16_be"), ("WEBP", "utf_16_le")])
def test_reads_a1111_jpeg_and_webp_exif(tmp_path: Path, fmt: str, encoding: str) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111_SAMPLE.encode(encoding)
    path = tmp_path / f"a.{fmt.lower()}"
    image().save(path, format=fmt, exif=exif)
    request = metadata.read_parameters(path)
    assert request is not None
    assert request.seed == 3870561722 and request.scheduler == "DPM++ 2M Karras"
    assert request.negative_prompt == "lowres, bad anatomy, text, watermark"
