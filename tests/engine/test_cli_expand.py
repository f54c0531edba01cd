"""diffusiondesk-cli generate --expand: outpaints the init image, keeps its pixels, records
the expansion, and refuses a bad --expand with one line."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import picture
from PIL import Image

from engine import cli, metadata
from engine.api import Expand


def run(capsys, tiny_models, *args):
    code = cli.main(["generate", "--model", "tiny", "--steps", "2", *args], models=tiny_models)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_expand_grows_the_picture_and_keeps_its_pixels(tmp_path, capsys, tiny_models):
    init, out = tmp_path / "init.png", tmp_path / "wide.png"
    picture((32, 32)).save(init)
    code, stdout, stderr = run(capsys, tiny_models, "--prompt", "a beach", "--init", str(init),
                               "--expand", "left=16,right=8", "--output", str(out))  # fmt: skip
    assert code == 0, stderr
    with Image.open(out) as saved:
        assert saved.size == (56, 32)
        assert np.array_equal(np.asarray(saved.convert("RGB"))[:, 16:48], np.asarray(picture()))
    back = metadata.read_parameters(out)
    assert back is not None and back.expand == Expand(left=16, right=8)
    assert back.strength == 1.0


def test_expand_piece_by_piece_with_only_masked(tmp_path, capsys, tiny_models):
    init, out = tmp_path / "init.png", tmp_path / "all.png"
    picture((32, 32)).save(init)
    code, _, stderr = run(capsys, tiny_models, "--prompt", "sky", "--init", str(init),
                          "--expand", "16", "--only-masked", "--padding", "8", "--piece", "32",
                          "--output", str(out))  # fmt: skip
    assert code == 0, stderr
    with Image.open(out) as saved:
        assert saved.size == (64, 64)
        assert np.array_equal(np.asarray(saved.convert("RGB"))[16:48, 16:48], np.asarray(picture()))


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--expand", "left=12"], "multiple of 8"),
        (["--expand", "wide"], "not understood"),
        (["--expand", "8", "--outpaint-fill", "paint"], "unknown fill"),
    ],
)
def test_a_bad_expand_exits_with_one_line(tmp_path, capsys, tiny_models, args, reason):
    init = tmp_path / "init.png"
    picture((32, 32)).save(init)
    code, _, stderr = run(capsys, tiny_models, "--prompt", "x", "--init", str(init), *args,
                          "--output", str(tmp_path / "o.png"))  # fmt: skip
    assert code == 1 and reason in stderr and len(stderr.strip().splitlines()) == 1


def test_expand_without_an_init_image_says_so(tmp_path, capsys, tiny_models):
    code, _, stderr = run(capsys, tiny_models, "--prompt", "x", "--expand", "64",
                          "--output", str(tmp_path / "o.png"))  # fmt: skip
    assert code == 1 and "--expand needs --init" in stderr
