"""diffusiondesk-cli generate: saves PNGs, shows progress, fails with one line."""

from __future__ import annotations

import pytest
from engine_helpers import box_mask, picture
from PIL import Image
from tiny_models import save_tiny_model

from engine import cli, metadata


def run(capsys, tiny_models, *args):
    code = cli.main(["generate", *args], models=tiny_models)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


BASE = ["--model", "tiny", "--steps", "2", "--width", "32", "--height", "32"]


def test_generate_saves_a_png(tmp_path, capsys, tiny_models):
    out = tmp_path / "out.png"
    code, stdout, stderr = run(capsys, tiny_models, "--prompt", "a red circle", "--seed", "5",
                               "--output", str(out), *BASE)  # fmt: skip
    assert code == 0, stderr
    assert Image.open(out).size == (32, 32)
    assert "seed 5" in stdout
    back = metadata.read_parameters(out)
    assert back is not None and back.seed == 5 and back.prompt == "a red circle"
    assert "2/2 steps" in stderr


def test_batch_and_inpaint(tmp_path, capsys, tiny_models):
    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    picture().save(init)
    box_mask().save(mask)
    out = tmp_path / "in.png"
    code, stdout, stderr = run(capsys, tiny_models, "--prompt", "a cat", "--init", str(init),
                               "--mask", str(mask), "--batch-size", "2", "--output", str(out),
                               "--model", "tiny", "--steps", "2")  # fmt: skip
    assert code == 0, stderr
    assert out.exists() and (tmp_path / "in-1.png").exists()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--width", "513"], "width must be a multiple of 8, got 513"),
        (["--steps", "0"], "steps must be between 1 and 1000"),
        (["--scheduler", "Foo"], "unknown scheduler"),
        (["--init", "/no/such.png"], "--init /no/such.png does not exist"),
        (["--model", "/no/model.safetensors"], "does not exist"),
    ],
)
def test_failures_exit_non_zero_with_one_line(tmp_path, capsys, tiny_models, args, reason):
    out = tmp_path / "x.png"
    argv = ["--prompt", "a", "--output", str(out), "--model", "tiny", "--steps", "2", *args]
    code, _, stderr = run(capsys, tiny_models, *argv)
    assert code == 1
    lines = [line for line in stderr.splitlines() if line.startswith("diffusiondesk-cli:")]
    assert len(lines) == 1 and reason.lower() in lines[0].lower(), stderr
    assert not out.exists()


def test_init_that_is_not_an_image(tmp_path, capsys, tiny_models):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    code, _, stderr = run(capsys, tiny_models, "--prompt", "a", "--init", str(text),
                          "--output", str(tmp_path / "o.png"))  # fmt: skip
    assert code == 1 and "is not an image file" in stderr


def test_real_model_manager_on_a_saved_folder(tmp_path, capsys):
    folder = save_tiny_model(tmp_path / "tiny-folder")
    out = tmp_path / "real.png"
    code = cli.main(["generate", "--prompt", "a red circle", "--model", str(folder),
                     "--steps", "2", "--width", "32", "--height", "32", "--device", "cpu",
                     "--output", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert Image.open(out).size == (32, 32)
