"""The autoencoder stage resumes from its checkpoint after an interruption."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import starter.train as train

TINY = (8, 8, 8, 8)


def test_autoencoder_stage_resumes_where_it_stopped(tmp_path: Path, monkeypatch) -> None:
    torch.set_num_threads(1)
    drawn: list[int] = []
    real_render = train.render

    def render_then_fail(scene):
        drawn.append(1)
        if len(drawn) > 2 * 2:  # the third step's pictures: the machine "goes down"
            raise KeyboardInterrupt
        return real_render(scene)

    monkeypatch.setattr(train, "render", render_then_fail)
    with pytest.raises(KeyboardInterrupt):
        train.train_vae(tmp_path, 4, batch=2, crop=32, channels=TINY, checkpoint_every=1)
    assert not (tmp_path / "vae.pt").exists()
    assert torch.load(tmp_path / "vae_ckpt.pt", weights_only=False)["step"] == 2

    drawn.clear()
    monkeypatch.setattr(train, "render", lambda scene: (drawn.append(1), real_render(scene))[1])
    train.train_vae(tmp_path, 4, batch=2, crop=32, channels=TINY, checkpoint_every=1)
    assert len(drawn) == 2 * 2  # only the two missing steps ran
    assert (tmp_path / "vae.pt").exists()
    assert "decoder.conv_out.weight" in torch.load(tmp_path / "vae.pt")
