"""The CLI takes LoRA tags in --prompt, --clip-skip, --vae and --models-dir."""

from __future__ import annotations

from lora_files import make_lora, write_kohya

from engine import cli, metadata


def test_the_cli_runs_a_lora_with_clip_skip_and_writes_them_into_the_png(
    tmp_path, capsys, own_models, models_root
):
    pipe = own_models.get("tiny", lambda *_: None, lambda: False).pipe
    write_kohya(make_lora(pipe), models_root / "Lora" / "detail.safetensors")
    out = tmp_path / "out.png"
    code = cli.main(
        ["generate", "--model", "tiny", "--steps", "2", "--width", "32", "--height", "32",
         "--prompt", "a red circle <lora:detail:0.5>", "--clip-skip", "2",
         "--models-dir", str(models_root), "--output", str(out), "--quiet"],
        models=own_models,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    text = metadata.read_texts(out)["parameters"]
    assert "<lora:detail:0.5>" in text and "Clip skip: 2" in text and "Lora hashes" in text


def test_the_cli_says_in_one_line_when_a_vae_is_missing(tmp_path, capsys, own_models):
    code = cli.main(
        ["generate", "--model", "tiny", "--steps", "1", "--width", "32", "--height", "32",
         "--prompt", "x", "--vae", "missing-vae", "--output", str(tmp_path / "o.png")],
        models=own_models,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and 'The VAE "missing-vae"' in err
