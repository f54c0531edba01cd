"""diffusiondesk-cli generate with a hires fix (--hires-scale …) and an upscale of a
finished picture (--upscale, --sd-tiles)."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import picture
from PIL import Image

from engine import cli, metadata


def run(capsys, tiny_models, *args):
    code = cli.main(["generate", *args], models=tiny_models)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_hires_fix_from_the_command_line_saves_the_large_picture_with_its_fields(
    tmp_path, capsys, tiny_models
):
    out = tmp_path / "hires.png"
    code, _, stderr = run(capsys, tiny_models, "--prompt", "a cat", "--model", "tiny",
                          "--steps", "2", "--width", "32", "--height", "32",
                          "--hires-scale", "2", "--hires-upscaler", "Latent (bicubic)",
                          "--hires-steps", "4", "--hires-denoise", "0.5",
                          "--output", str(out))  # fmt: skip
    assert code == 0, stderr
    assert Image.open(out).size == (64, 64)
    text = metadata.read_texts(out)["parameters"]
    assert "Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent (bicubic)" in text
    assert "4/4 steps" in stderr  # 2 first-pass steps + int(4 * 0.5) hires steps


def test_upscale_enlarges_the_init_picture_without_a_model(tmp_path, capsys, tiny_models):
    init, out = tmp_path / "small.png", tmp_path / "big.png"
    picture((40, 32)).save(init)
    code, _, stderr = run(capsys, tiny_models, "--prompt", "", "--init", str(init),
                          "--upscale", "2", "--model", "nowhere", "--output", str(out))  # fmt: skip
    assert code == 0, stderr
    assert Image.open(out).size == (80, 64)
    assert "Postprocess upscaler: Lanczos" in metadata.read_texts(out)["parameters"]


def test_sd_tiles_repaint_the_enlarged_picture(tmp_path, capsys, tiny_models):
    init, out = tmp_path / "small.png", tmp_path / "big.png"
    picture((64, 64)).save(init)
    code, _, stderr = run(capsys, tiny_models, "--prompt", "sharp", "--init", str(init),
                          "--upscale", "2", "--sd-tiles", "--tile", "64", "--tile-overlap", "16",
                          "--strength", "0.5", "--steps", "2", "--model", "tiny",
                          "--output", str(out))  # fmt: skip
    assert code == 0, stderr
    big = Image.open(out)
    assert big.size == (128, 128)
    lanczos = picture((64, 64)).resize((128, 128), Image.Resampling.LANCZOS)
    assert (np.asarray(big.convert("RGB")) != np.asarray(lanczos)).any()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--upscale", "2"], "--upscale needs --init"),
        (["--sd-tiles"], "--sd-tiles goes with --upscale"),
        (["--hires-scale", "twice"], "--hires-scale must be a number"),
        (["--hires-scale", "20"], "hires scale must be a number from 1 to 8"),
    ],
)
def test_bad_hires_and_upscale_options_fail_with_one_line(
    tmp_path, capsys, tiny_models, args, reason
):
    argv = ["--prompt", "a", "--output", str(tmp_path / "x.png"), "--model", "tiny", *args]
    code, _, stderr = run(capsys, tiny_models, *argv)
    assert code == 1
    assert reason in stderr
    assert len(stderr.strip().splitlines()) == 1
