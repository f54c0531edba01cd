"""Pictures as a viewer shows them, and every unusable file refused with one sentence."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile
from reliability_helpers import encode, one_sentence, png_16bit_rgb, png_with_header

from engine.api import ErrorKind
from engine.images import MAX_WORK_PIXELS, ImageError, open_image, open_mask


def refused(source: object) -> str:
    with pytest.raises(ImageError) as caught:
        open_image(source)
    assert caught.value.kind == ErrorKind.BAD_INPUT
    one_sentence(caught.value.message)
    return caught.value.message


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


# ----------------------------------------------------------------------------- orientation


def test_exif_orientation_6_turns_a_wide_photo_upright():
    photo = Image.new("RGB", (40, 16), (0, 0, 255))
    photo.paste((255, 0, 0), (0, 0, 8, 16))  # red on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    image, mask, _ = open_image(encode(photo, "PNG", exif=exif))
    assert image.size == (16, 40) and mask is None
    top = pixels(image)[2, 8]
    assert top[0] > 200 and top[2] < 60  # what was on the left is now at the top


def test_exif_orientation_3_turns_a_photo_upside_down():
    photo = Image.new("RGB", (16, 16), (0, 0, 0))
    photo.paste((255, 255, 255), (0, 0, 16, 4))  # white stripe at the top as stored
    exif = Image.Exif()
    exif[0x0112] = 3
    image = open_image(encode(photo, "PNG", exif=exif)).image
    assert pixels(image)[15, 8].min() > 200 and pixels(image)[0, 8].max() < 50


def test_a_broken_exif_block_still_opens_the_picture_as_stored():
    photo = Image.new("RGB", (24, 8), (1, 2, 3))
    exif = Image.Exif()
    exif[0x0112] = 99  # no such orientation
    image = open_image(encode(photo, "PNG", exif=exif)).image
    assert image.size == (24, 8) and pixels(image)[0, 0].tolist() == [1, 2, 3]


# ----------------------------------------------------------------------------- colour formats


def test_16_bit_grayscale_is_scaled_not_clipped_to_white():
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    image = open_image(encode(Image.fromarray(ramp))).image
    values = pixels(image)[..., 0]
    assert image.mode == "RGB"
    assert values.min() == 0 and values.max() >= 250
    assert 100 < values[32, 32] < 160  # the middle of the ramp is mid-grey, not white


def test_16_bit_rgb_png_keeps_its_colour():
    image = open_image(png_16bit_rgb((65535, 32768, 0))).image
    assert pixels(image)[0, 0].tolist() == [255, 128, 0]


def test_16_bit_tiff_is_scaled():
    values = np.full((8, 8), 32768, np.uint16)
    image = open_image(encode(Image.fromarray(values), "TIFF")).image
    assert 126 <= pixels(image)[0, 0, 0] <= 129


def test_float_tiff_from_0_to_1_is_scaled():
    values = np.full((8, 8), 0.5, np.float32)
    image = open_image(encode(Image.fromarray(values, "F"), "TIFF")).image
    assert 126 <= pixels(image)[0, 0, 0] <= 129


def test_palette_picture_keeps_its_colours():
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 12, 200, 34] + [0] * 762)
    image, mask, _ = open_image(encode(palette))
    assert pixels(image)[3, 3].tolist() == [12, 200, 34] and mask is None


def test_palette_with_a_transparent_colour_gives_a_mask():
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.paste(1, (0, 0, 8, 16))  # left half: colour 1, declared transparent
    image, mask, notes = open_image(encode(palette, transparency=1))
    assert mask is not None
    assert mask.getpixel((2, 5)) == 255 and mask.getpixel((12, 5)) == 0
    assert pixels(image)[5, 12].tolist() == [255, 0, 0]
    assert any("transparent" in n for n in notes)


def test_grayscale_becomes_grey_rgb():
    image = open_image(encode(Image.new("L", (8, 8), 77))).image
    assert image.mode == "RGB" and pixels(image)[0, 0].tolist() == [77, 77, 77]


def test_one_bit_picture_becomes_black_and_white():
    bits = Image.new("1", (8, 8), 0)
    bits.paste(1, (0, 0, 4, 8))
    image = open_image(encode(bits)).image
    assert pixels(image)[0, 0].tolist() == [255] * 3 and pixels(image)[0, 7].tolist() == [0] * 3


def test_grayscale_with_alpha_gives_a_mask():
    gray = Image.new("L", (8, 8), 200)
    alpha = Image.new("L", (8, 8), 255)
    alpha.paste(0, (4, 0, 8, 8))
    image, mask, _ = open_image(encode(Image.merge("LA", [gray, alpha])))
    assert pixels(image)[0, 0].tolist() == [200] * 3
    assert mask is not None and mask.getpixel((6, 3)) == 255 and mask.getpixel((1, 3)) == 0


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_becomes_the_rgb_a_viewer_shows(fmt):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red ink
    red = pixels(open_image(encode(cmyk, fmt)).image)[4, 4]
    assert red[0] > 240 and red[1] < 15 and red[2] < 15


def test_a_colour_profile_that_does_not_fit_is_noted_and_the_picture_still_opens():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))
    image, _, notes = open_image(encode(cmyk, "TIFF", icc_profile=srgb))
    assert pixels(image)[0, 0][0] > 240
    assert any("colour profile" in n for n in notes)


def test_an_srgb_profile_leaves_the_colours_as_they_are():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = open_image(encode(Image.new("RGB", (8, 8), (40, 120, 200)), icc_profile=srgb)).image
    assert np.abs(pixels(image)[0, 0].astype(int) - [40, 120, 200]).max() <= 2


def test_opaque_rgba_has_no_mask():
    image, mask, notes = open_image(encode(Image.new("RGBA", (8, 8), (9, 8, 7, 255))))
    assert mask is None and notes == () and pixels(image)[0, 0].tolist() == [9, 8, 7]


def test_transparent_part_of_rgba_becomes_the_mask_and_the_colours_stay():
    picture = Image.new("RGBA", (16, 16), (30, 60, 90, 255))
    picture.paste((0, 0, 0, 0), (4, 4, 12, 12))
    image, mask, notes = open_image(encode(picture))
    assert mask is not None and mask.getbbox() == (4, 4, 12, 12)
    assert pixels(image)[0, 0].tolist() == [30, 60, 90]
    assert notes == ("its transparent part is used as the mask (white = repaint)",)


def test_webp_with_alpha_gives_a_mask():
    picture = Image.new("RGBA", (16, 16), (200, 10, 10, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 8, 16))
    _, mask, _ = open_image(encode(picture, "WEBP", lossless=True))
    assert mask is not None and mask.getbbox() == (0, 0, 8, 16)


def test_animated_gif_opens_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = io.BytesIO()
    frames[0].save(data, "GIF", save_all=True, append_images=frames[1:])
    first = pixels(open_image(data.getvalue()).image)[0, 0]
    assert first[0] > 200 and first[2] < 50


# ----------------------------------------------------------------------------- masks


def test_a_mask_of_white_strokes_on_a_transparent_layer_is_read():
    layer = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (0, 0, 4, 8))
    mask = open_mask(encode(layer)).image
    assert mask.mode == "L" and mask.getbbox() == (0, 0, 4, 8)


def test_a_mask_without_white_says_masks_are_read_from_brightness():
    layer = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    layer.paste((0, 0, 0, 255), (0, 0, 4, 8))  # black strokes: "keep" everywhere
    with pytest.raises(ImageError, match="masks are read from brightness") as caught:
        open_mask(encode(layer))
    one_sentence(caught.value.message)


def test_a_grey_mask_keeps_its_brightness():
    mask = open_mask(encode(Image.new("L", (8, 8), 200))).image
    assert mask.getpixel((0, 0)) == 200


# ----------------------------------------------------------------------------- too large


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel data is decoded."""

    def load(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_decompression_bomb_is_refused_from_its_header_with_the_memory_it_needs(no_decoding):
    message = refused(png_with_header(20_000, 20_000))
    assert "400 megapixels" in message and "GB of memory" in message


def test_a_picture_just_over_the_limit_is_refused_before_decoding(no_decoding):
    message = refused(png_with_header(12_000, 9_000))
    assert "12000x9000" in message and "GB of memory" in message and "scale it down" in message


def test_an_absurd_header_size_is_refused(no_decoding):
    message = refused(png_with_header(2**31 - 1, 2**31 - 1))
    assert "megapixels" in message


def test_a_tiff_claiming_a_huge_size_is_refused(no_decoding):
    tiff = bytearray(encode(Image.new("L", (8, 8)), "TIFF", compression="raw"))
    image = Image.open(io.BytesIO(bytes(tiff)))
    assert image.size == (8, 8)
    # Rewrite the ImageWidth and ImageLength entries (tags 256 and 257) of the first IFD.
    ifd = int.from_bytes(tiff[4:8], "little")
    count = int.from_bytes(tiff[ifd : ifd + 2], "little")
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag = int.from_bytes(tiff[entry : entry + 2], "little")
        if tag in (256, 257):
            tiff[entry + 2 : entry + 4] = (4).to_bytes(2, "little")  # LONG
            tiff[entry + 8 : entry + 12] = (200_000).to_bytes(4, "little")
    assert "megapixels" in refused(bytes(tiff))


def test_a_huge_photo_is_scaled_down_with_a_note():
    photo = encode(Image.new("RGB", (6000, 4000), (10, 200, 30)), "JPEG", quality=50)
    image, _, notes = open_image(photo)
    assert image.width * image.height <= MAX_WORK_PIXELS
    assert image.width % 8 == 0 and image.height % 8 == 0
    assert abs(image.width / image.height - 1.5) < 0.02
    assert notes and "scaled down from 6000x4000" in notes[0]


def test_a_big_png_with_alpha_is_scaled_with_its_mask():
    picture = Image.new("RGBA", (3000, 2000), (0, 0, 0, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 1500, 2000))
    image, mask, notes = open_image(encode(picture, compress_level=1))
    assert mask is not None and mask.size == image.size
    assert image.width * image.height <= MAX_WORK_PIXELS and len(notes) == 2


# ----------------------------------------------------------------------------- broken files


def test_a_truncated_png_is_refused_as_damaged():
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"))
    assert "damaged" in refused(data[: len(data) // 2])


def test_a_truncated_jpeg_is_refused_as_damaged():
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    assert "damaged" in refused(data[: len(data) // 3])


def test_text_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    assert refused(path).startswith(f"{path} is not an image file")


def test_an_empty_file_is_not_an_image(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert "is not an image file" in refused(path)


def test_a_folder_is_not_an_image(tmp_path):
    assert "is a folder" in refused(tmp_path)


def test_a_missing_file_says_so(tmp_path):
    assert "does not exist" in refused(tmp_path / "gone.png")


def test_a_png_signature_followed_by_garbage_is_refused():
    refused(b"\x89PNG\r\n\x1a\n" + b"\xff" * 200)


# ----------------------------------------------------------------------------- fuzzing


def _mutations(data: bytes, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            choice = rng.random()
            position = rng.randrange(len(mutated))
            if choice < 0.6:
                mutated[position] = rng.randrange(256)
            elif choice < 0.8:
                del mutated[position : position + rng.randint(1, 16)]
            else:
                mutated[position:position] = bytes(rng.randrange(256) for _ in range(4))
        out.append(bytes(mutated))
    return out


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("JPEG", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}), ("GIF", {})],
)
def test_mutated_files_open_or_are_refused_with_a_sentence_never_a_traceback(fmt, options):
    base = Image.effect_noise((24, 16), 40).convert("RGB")
    seed_bytes = encode(base if fmt != "GIF" else base.convert("P"), fmt, **options)
    for data in _mutations(seed_bytes, 150, seed=len(fmt) + len(options)):
        try:
            image, _, _ = open_image(data)
        except ImageError as exc:
            one_sentence(exc.message)
        else:
            assert image.mode == "RGB" and image.width > 0


def test_random_bytes_after_image_signatures_never_escape_as_a_traceback():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    signatures = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF89a", b"BM"]

    @settings(max_examples=200, deadline=None, database=None)
    @given(st.sampled_from(signatures), st.binary(max_size=300))
    def opens_or_refuses(signature: bytes, body: bytes) -> None:
        try:
            open_image(signature + body)
        except ImageError as exc:
            one_sentence(exc.message)

    opens_or_refuses()
