"""The CLI checks every argument before torch is imported and answers a bad one with exit 1
and one line on stderr; no output file appears."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import picture
from PIL import Image
from reliability_helpers import CLI, cli_fails_with, encode, png_with_header

ROOT = Path(__file__).resolve().parents[2]
BASE = ["--model", "tiny", "--steps", "2", "--width", "32", "--height", "32"]


@pytest.fixture
def stand_in_torch(tmp_path: Path) -> tuple[Path, Path]:
    """A `torch` package first on sys.path that leaves a marker file when imported."""
    package = tmp_path / "stand_in" / "torch"
    package.mkdir(parents=True)
    marker = tmp_path / "torch-was-imported"
    (package / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "raise ImportError('the stand-in torch: the CLI imported torch too early')\n"
    )
    return package.parent, marker


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--output", "out.gif"], "--output must be a .png, .jpg or .webp file"),
        (["--output", "out.png", "--steps", "many"], "--steps must be a whole number"),
        (["--output", "out.png", "--seed", "1e999"], "--seed must be a whole number"),
        (["--output", "out.png", "--scheduler", "LCM", "--steps", "80"], "between 1 and 50"),
        (["--output", "out.png", "--device", "gpu9"], "--device must be"),
        (["--output", "out.png", "--init", "missing.png"], "does not exist"),
    ],
)
def test_bad_arguments_answer_before_torch_is_imported(stand_in_torch, tmp_path, args, words):
    path, marker = stand_in_torch
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "generate", "--prompt", "a", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{CLI} error:"), done.stderr
    assert words in lines[0]
    assert not marker.exists(), "torch was imported before the arguments were checked"
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--seed", "9" * 5000], "--seed must be a whole number, got '9999"),
        (["--seed", "-1"], "seed must be a whole number from 0"),
        (["--guidance", "nan"], "--guidance must be a number"),
        (["--guidance", "1e999"], "--guidance must be a number"),
        (["--strength", "zero", "--init", "INIT"], "--strength must be a number"),
        (["--width", "513"], "width must be a multiple of 8, got 513"),
        (["--width", "5" * 50], "--width must be a whole number"),
        (["--batch-size", "0"], "batch size must be between 1 and 16"),
        (["--mask-blur", "-4", "--init", "INIT", "--mask", "MASK"], "mask blur must be between"),
        (["--dtype", "float8"], "--dtype must be auto, float32"),
        (["--mask", "MASK"], "--mask needs --init"),
        (["--init", "BOMB"], "would need about"),
        (["--init", "TEXT"], "is not an image file"),
        (["--init", "INIT", "--mask", "BLACK"], "masks are read from brightness"),
        (["--init", "INIT", "--strength", "0"], "strength must be more than 0"),
        (["--prompt", "p" * 30_000], "characters long"),
    ],
)
def test_bad_values_get_one_line_and_exit_1(cli, tmp_path, args, words):
    files = {
        "INIT": lambda p: picture().save(p),
        "MASK": lambda p: Image.new("L", (32, 32), 255).save(p),
        "BLACK": lambda p: Image.new("L", (32, 32), 0).save(p),
        "BOMB": lambda p: p.write_bytes(png_with_header(30_000, 30_000)),
        "TEXT": lambda p: p.write_text("hello"),
    }
    argv = []
    for arg in args:
        if arg in files:
            path = tmp_path / f"{arg.lower()}.png"
            files[arg](path)
            arg = str(path)
        argv.append(arg)
    if "--prompt" not in argv:
        argv = ["--prompt", "a", *argv]
    line = cli_fails_with(cli, *BASE, *argv, words=words, output=tmp_path / "out.png")
    assert len(line) < 400


def test_output_inside_a_file_is_refused_before_the_job_runs(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cli_fails_with(
        cli, "--prompt", "a", *BASE, words="is a file, not a folder", output=blocker / "out.png"
    )


def test_output_that_is_a_folder_is_refused(cli, tmp_path):
    folder = tmp_path / "dir.png"
    folder.mkdir()
    code, _, lines = cli("--prompt", "a", *BASE, "--output", str(folder))
    assert code == 1 and len(lines) == 1 and "is a folder" in lines[0]


def test_an_init_image_with_transparency_inpaints_its_transparent_part(cli, tmp_path):
    init = Image.new("RGBA", (32, 32), (200, 30, 30, 255))
    init.paste((0, 0, 0, 0), (8, 8, 24, 24))
    path = tmp_path / "init.png"
    path.write_bytes(encode(init))
    out = tmp_path / "out.png"
    code, stdout, lines = cli("--prompt", "a", *BASE, "--init", str(path), "--output", str(out))
    assert code == 0, lines
    assert any("transparent part is used as the mask" in line for line in lines)
    result = Image.open(out).convert("RGB")
    assert result.getpixel((1, 1)) == (200, 30, 30)  # kept outside the mask
    assert "saved" in stdout
