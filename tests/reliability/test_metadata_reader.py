"""Reading generation parameters from any file: never an exception, linear time, bounded
text, and only values the engine accepts reach the form; the rest are named."""

from __future__ import annotations

import json
import re
import zlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from reliability_helpers import encode, png_with_text

from engine import metadata, validation
from engine.api import GenerationRequest

DEFAULT = GenerationRequest(prompt="")
GOOD = "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x768"


def read(text: str) -> metadata.ParametersReading:
    reading = metadata.parse_a1111_checked(text)
    assert reading.request is not None
    assert validation.problems(reading.request.with_changes(prompt="p")) == []
    return reading


def read_file(path_or_bytes, tmp_path) -> metadata.ParametersReading:
    if isinstance(path_or_bytes, bytes):
        path = tmp_path / "in.png"
        path.write_bytes(path_or_bytes)
        path_or_bytes = path
    return metadata.read_parameters_checked(path_or_bytes)


# ----------------------------------------------------------------------------- out of range


@pytest.mark.parametrize(
    ("field", "text", "name", "left_out"),
    [
        ("Seed", "1e999", "seed", "Seed '1e999'"),
        ("Seed", "9" * 5000, "seed", "Seed '9999"),
        ("Seed", "-5", "seed", "Seed '-5'"),
        ("Seed", "18446744073709551615", "seed", "from 0 to"),
        ("Steps", "-20", "steps", "Steps '-20'"),
        ("Steps", "0", "steps", "Steps '0'"),
        ("Steps", "twenty", "steps", "a whole number"),
        ("Steps", "1e9", "steps", "from 1 to 1000"),
        ("CFG scale", "inf", "guidance_scale", "a number from 0 to 100"),
        ("CFG scale", "nan", "guidance_scale", "CFG scale 'nan'"),
        ("CFG scale", "1e999", "guidance_scale", "CFG scale"),
        ("CFG scale", "-3", "guidance_scale", "CFG scale '-3'"),
        ("Batch size", "1000", "batch_size", "Batch size '1000'"),
        ("Mask blur", "-1", "mask_blur", "Mask blur"),
        ("Denoising strength", "0", "strength", "above 0 and at most 1"),
        ("Denoising strength", "2.5", "strength", "Denoising strength '2.5'"),
        ("Sampler", "Quantum Sampler 9000", "scheduler", "a sampler DiffusionDesk has"),
    ],
)
def test_out_of_range_values_are_left_out_and_named(field, text, name, left_out):
    line = f"Steps: 20, CFG scale: 7, Seed: 42, Size: 512x512, {field}: {text}"
    if field in ("Steps", "CFG scale", "Seed"):
        line = re.sub(rf"{field}: [^,]*, ", "", line) + ", Model: x"
    reading = read(f"a cat\n{line}")
    assert getattr(reading.request, name) == getattr(DEFAULT, name)
    assert any(left_out in note for note in reading.left_out), reading.left_out
    assert all(len(note) < 200 for note in reading.left_out)


@pytest.mark.parametrize(
    ("size", "why"), [("513x512", "multiple of 8"), ("0x0", "from 8"), ("99999x8", "to 4096")]
)
def test_sizes_the_engine_refuses_are_left_out(size, why):
    reading = read(f"a cat\nSteps: 20, Seed: 1, CFG scale: 5, Size: {size}")
    assert (reading.request.width, reading.request.height) == (DEFAULT.width, DEFAULT.height)
    assert any(why in note for note in reading.left_out), reading.left_out


def test_a_size_that_is_not_wxh_is_left_out():
    reading = read("a cat\nSteps: 20, Seed: 1, CFG scale: 5, Size: big")
    assert any("WxH" in note for note in reading.left_out)


def test_lcm_above_its_step_limit_keeps_the_sampler_and_drops_the_steps():
    reading = read("a cat\nSteps: 80, Sampler: LCM, CFG scale: 1.5, Seed: 3")
    assert reading.request.scheduler == "LCM" and reading.request.steps == DEFAULT.steps
    assert any("the most for LCM is 50" in note for note in reading.left_out)


def test_twenty_digit_seeds_are_read_exactly_not_through_a_float():
    reading = read("a cat\nSteps: 20, CFG scale: 7, Seed: 12345678901234567890")
    assert reading.request.seed == 12345678901234567890 and reading.left_out == ()


def test_good_values_pass_untouched():
    reading = read(f"a cat\nNegative prompt: dog\n{GOOD}")
    r = reading.request
    assert (r.steps, r.scheduler, r.guidance_scale, r.seed) == (20, "Euler a", 7.0, 42)
    assert (r.width, r.height, r.negative_prompt) == (512, 768, "dog")
    assert reading.left_out == ()


# ----------------------------------------------------------------------------- our JSON record


def record(**fields: object) -> str:
    base = metadata.to_record(GenerationRequest(prompt="from json"), seed=5)
    base.update(fields)
    return json.dumps(base)


def test_the_string_false_is_false_not_true():
    reading = metadata.from_record_checked(record(inpaint_only_masked="false"))
    assert reading.request.inpaint_only_masked is False and reading.left_out == ()


def test_a_flag_that_is_not_true_or_false_is_left_out():
    reading = metadata.from_record_checked(record(inpaint_only_masked=[1]))
    assert reading.request.inpaint_only_masked is False
    assert any("true or false" in note for note in reading.left_out)


def test_json_infinity_and_huge_numbers_are_left_out():
    text = record(guidance_scale=1.5).replace('"guidance_scale": 1.5', '"guidance_scale": 1e999')
    reading = metadata.from_record_checked(text)
    assert reading.request.guidance_scale == DEFAULT.guidance_scale
    assert any("Guidance scale inf" in note for note in reading.left_out)


def test_a_seed_of_five_thousand_digits_in_json_is_left_out_without_an_overflow():
    text = record(seed=0).replace('"seed": 0', '"seed": ' + "7" * 5000)
    reading = metadata.read_parameters_checked(
        Image.open(__import__("io").BytesIO(png_with_text({"diffusiondesk": text})))
    )
    # Python refuses to parse a 5000-digit int in JSON; the record is unusable as a whole.
    assert reading.request is None or reading.request.seed is None


def test_booleans_are_not_numbers():
    reading = metadata.from_record_checked(record(steps=True, batch_size=False))
    assert (reading.request.steps, reading.request.batch_size) == (DEFAULT.steps, 1)
    assert len(reading.left_out) == 2


def test_deeply_nested_json_does_not_raise_recursion_error(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    data = png_with_text({"diffusiondesk": deep, "parameters": f"a cat\n{GOOD}"})
    reading = read_file(data, tmp_path)
    assert reading.request is not None and reading.request.prompt == "a cat"  # A1111 fallback


def test_a_lone_surrogate_in_the_json_prompt_becomes_a_replacement_character():
    reading = metadata.from_record_checked(record(prompt="a \ud800 cat"))
    assert reading.request.prompt == "a \ufffd cat"
    reading.request.prompt.encode("utf-8")


def test_a_resume_from_a_file_is_checked():
    reading = metadata.from_record_checked(record(resume={"job_id": "x", "step": 10**30}))
    assert reading.request.resume is None and reading.left_out


def test_a_model_name_with_a_nul_byte_is_left_out():
    reading = metadata.from_record_checked(record(model="/tmp/a\x00b"))
    assert reading.request.model == DEFAULT.model and reading.left_out


# ----------------------------------------------------------------------------- hostile text


@pytest.mark.parametrize(
    "line",
    [
        'Steps: 20, a: "' + "\\x" * 50_000,  # an unclosed quote full of escapes
        "Steps: 20, " + "key: value, " * 8_000,  # thousands of pairs
        "Steps: 20, Seed: 1, CFG scale: 7, " + "x" * 100_000,  # no colon after
        "a" * 50_000 + ": " + '"' * 50_000,
        ",:" * 50_000,
        " " * 100_000 + "Steps: 20",
    ],
)
def test_pathological_parameter_lines_parse_and_give_a_usable_request(line):
    reading = metadata.parse_a1111_checked(f"a prompt\n{line}")
    assert reading.request is not None
    assert validation.problems(reading.request.with_changes(prompt="p")) == []


def test_a_100000_character_parameters_line_keeps_its_values():
    line = "Steps: 33, Seed: 7, CFG scale: 4, Lora hashes: " + json.dumps("x, " * 34_000)
    assert len(line) > 100_000
    reading = read(f"a cat\n{line}")
    assert (reading.request.steps, reading.request.seed) == (33, 7)


def test_quoted_values_with_commas_and_escapes_are_read_like_a1111():
    fields = metadata.parse_a1111_fields(
        'p\nSteps: 5, Template: "a, \\"b\\", c", Seed: 1, Size: 64x64'
    )[2]
    assert fields["Template"] == 'a, "b", c' and fields["Seed"] == "1"


def test_text_over_the_bound_is_not_read_and_is_named(tmp_path):
    huge = "a cat " * 40_000 + "\n" + GOOD
    reading = read_file(png_with_text({"parameters": huge}), tmp_path)
    assert reading.request is None
    assert any("200,000" in note for note in reading.left_out)


def test_a_compressed_text_bomb_is_not_inflated(tmp_path):
    info = PngInfo()
    info.add_text("parameters", "a" * 20_000_000, zip=True)  # 20 MB that packs into 20 kB
    data = encode(Image.new("RGB", (8, 8)), pnginfo=info)
    assert len(data) < 200_000
    reading = read_file(data, tmp_path)
    assert reading.request is None


def test_invalid_utf8_in_a_text_chunk_is_replaced(tmp_path):
    raw = b"a \xff\xfe cat\n" + GOOD.encode()
    chunk = b"iTXt" + b"parameters\x00\x00\x00\x00\x00" + raw
    data = encode(Image.new("RGB", (8, 8)))
    body = len(chunk[4:]).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")
    data = data[:-12] + body + data[-12:]
    reading = read_file(data, tmp_path)
    assert reading.request is None or "cat" in reading.request.prompt


@pytest.mark.parametrize(
    "content",
    [b"", b"not a picture", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "directory", "missing"],
)
def test_files_that_are_not_pictures_carry_no_parameters(tmp_path, content):
    if content == "directory":
        path = tmp_path
    elif content == "missing":
        path = tmp_path / "gone.png"
    else:
        path = tmp_path / "x.png"
        path.write_bytes(content)
    assert metadata.read_parameters_checked(path).request is None
    assert metadata.read_parameters(path) is None


def test_garbage_exif_user_comment_does_not_raise(tmp_path):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + b"\xd8\x00" * 5000
    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8)).save(path, exif=exif)
    reading = metadata.read_parameters_checked(path)
    assert reading.request is None or isinstance(reading.request.prompt, str)


def test_any_text_parses_to_a_request_the_engine_accepts():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    alphabet = st.sampled_from(list('ab :,"\\\n-xX0123456789.e') + ["Steps", "Seed", "Size"])

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.lists(alphabet, max_size=60).map("".join))
    def parses(text: str) -> None:
        reading = metadata.parse_a1111_checked(text)
        assert reading.request is not None
        assert validation.problems(reading.request.with_changes(prompt="p")) == []

    parses()


def test_the_scanner_reads_what_a1111s_regex_reads_on_ordinary_lines():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    a1111 = re.compile(r'\s*(\w[\w \-/+.()]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
    key = st.sampled_from(["Steps", "CFG scale", "Model hash", "Lora hashes", "Hires upscale"])
    value = st.one_of(
        st.text(st.sampled_from("abc 0123.x"), max_size=8),
        st.text(st.sampled_from("ab, :"), max_size=8).map(json.dumps),
    )

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.lists(st.tuples(key, value), min_size=1, max_size=6))
    def same(pairs: list[tuple[str, str]]) -> None:
        line = ", ".join(f"{k}: {v}" for k, v in pairs)
        assert metadata.scan_pairs(line) == a1111.findall(line)

    same()
