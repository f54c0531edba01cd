"""diffusiondesk-cli saves JPEG and WebP too, chosen by the --output suffix."""

from __future__ import annotations

import pytest
from PIL import Image

from engine import cli, metadata

BASE = ["--model", "tiny", "--steps", "2", "--width", "32", "--height", "32"]


@pytest.mark.parametrize(("suffix", "kind"), [(".jpg", "JPEG"), (".webp", "WEBP")])
def test_the_output_suffix_picks_the_format_and_the_settings_ride_along(
    tmp_path,
    capsys,
    tiny_models,
    suffix: str,
    kind: str,
) -> None:
    out = tmp_path / f"out{suffix}"
    code = cli.main(
        ["generate", "--prompt", "a red circle", "--seed", "5", "--batch-size", "2",
         "--output", str(out), *BASE],
        models=tiny_models,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    second = tmp_path / f"out-1{suffix}"
    for path, seed in ((out, 5), (second, 6)):
        with Image.open(path) as image:
            assert image.format == kind and image.size == (32, 32)
        back = metadata.read_parameters(path)
        assert back is not None and (back.prompt, back.seed, back.steps) == (
            "a red circle",
            seed,
            2,
        )


def test_an_output_suffix_we_cannot_write_is_refused_before_any_work(
    tmp_path,
    capsys,
    tiny_models,
) -> None:
    code = cli.main(
        ["generate", "--prompt", "x", "--output", str(tmp_path / "o.gif"), *BASE],
        models=tiny_models,
    )
    assert code != 0
    assert "--output must be a .png, .jpg or .webp file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
