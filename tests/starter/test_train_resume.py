"""The autoencoder and decoder stages resume from their checkpoints after an interruption."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import starter.train as train

TINY = (8, 8, 8, 8)
BATCH = 2


def run_interrupted_then_resumed(monkeypatch, stage: Callable[[], None]) -> int:
    """Run `stage` until its third step draws its pictures (the machine "goes down"),
    then again to the end; return how many pictures the second run drew."""
    drawn: list[int] = []
    real_render = train.render

    def counting_render(scene, fail_after: int | None):
        drawn.append(1)
        if fail_after is not None and len(drawn) > fail_after:
            raise KeyboardInterrupt
        return real_render(scene)

    monkeypatch.setattr(train, "render", lambda scene: counting_render(scene, 2 * BATCH))
    with pytest.raises(KeyboardInterrupt):
        stage()
    drawn.clear()
    monkeypatch.setattr(train, "render", lambda scene: counting_render(scene, None))
    stage()
    return len(drawn)


def test_autoencoder_stage_resumes_where_it_stopped(tmp_path: Path, monkeypatch) -> None:
    torch.set_num_threads(1)

    def stage() -> None:
        train.train_vae(tmp_path, 4, batch=BATCH, crop=32, channels=TINY, checkpoint_every=1)

    assert run_interrupted_then_resumed(monkeypatch, stage) == 2 * BATCH  # two missing steps
    assert torch.load(tmp_path / "vae_ckpt.pt", weights_only=False)["step"] == 4
    assert "decoder.conv_out.weight" in torch.load(tmp_path / "vae.pt")


def test_decoder_stage_resumes_where_it_stopped(tmp_path: Path, monkeypatch) -> None:
    torch.set_num_threads(1)
    before = train.build_vae(TINY).state_dict()
    torch.save(before, tmp_path / "vae.pt")

    def stage() -> None:
        train.sharpen_decoder(
            tmp_path,
            4,
            batch=BATCH,
            channels=TINY,
            checkpoint_every=1,
            crowded=0.5,
            object_weight=3.0,
        )

    assert run_interrupted_then_resumed(monkeypatch, stage) == 2 * BATCH
    after = torch.load(tmp_path / "vae_sharp.pt")
    # Only the decoder learned: the encoder, and so every latent, is unchanged.
    assert torch.equal(after["encoder.conv_in.weight"], before["encoder.conv_in.weight"])
    assert not torch.equal(after["decoder.conv_out.weight"], before["decoder.conv_out.weight"])
