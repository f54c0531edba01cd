"""Upscaler models: the built-in loader reads tiny random ESRGAN (RRDBNet, old and new key
layouts, with Real-ESRGAN's pixel-unshuffle variant) and SRVGG files, runs them tile by tile
with the same result as in one piece, and never unpickles without consent."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from engine_helpers import WAIT, picture, request
from PIL import Image
from safetensors.torch import save_file

from engine.api import EngineError, Failed, Finished, Step, Upscale
from engine.upscalers import enlarge
from engine.upscalers.architectures import RRDBNet, SRVGGNetCompact
from engine.upscalers.sr_loading import load_upscaler


def tiny_rrdbnet(upsamples: int = 2, unshuffle: int = 1) -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(3, 3, features=8, growth=4, blocks=2, upsamples=upsamples, unshuffle=unshuffle)


def old_layout(state: dict[str, torch.Tensor], upsamples: int) -> dict[str, torch.Tensor]:
    """The new-layout keys renamed the way ESRGAN's original code numbered them."""
    blocks = len({k.split(".")[1] for k in state if k.startswith("body.")})
    tail = {f"ups.{i}": 3 + 3 * i for i in range(upsamples)}
    tail["conv_hr"] = 3 + 3 * upsamples
    tail["conv_last"] = tail["conv_hr"] + 2
    out = {}
    for key, value in state.items():
        if m := re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)", key):
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}"] = value
        elif key.startswith("conv_body."):
            out[f"model.1.sub.{blocks}.{key.split('.')[1]}"] = value
        elif key.startswith("conv_first."):
            out[f"model.0.{key.split('.')[1]}"] = value
        else:
            name, kind = key.rsplit(".", 1)
            out[f"model.{tail[name]}.{kind}"] = value
    return out


def new_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        re.sub(r"^ups\.(\d+)", lambda m: f"conv_up{int(m[1]) + 1}", k): v for k, v in state.items()
    }


def reference(module: torch.nn.Module, image: Image.Image) -> np.ndarray:
    x = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        y = module(x).clamp(0, 1)[0].permute(1, 2, 0) * 255
    return y.numpy()


@pytest.mark.parametrize("layout", ["old", "new"])
def test_an_esrgan_file_in_either_layout_loads_and_enlarges_four_times(tmp_path, layout):
    module = tiny_rrdbnet()
    state = module.state_dict()
    path = tmp_path / "4x-tiny.safetensors"
    save_file(old_layout(state, 2) if layout == "old" else new_layout(state), path)
    loaded = load_upscaler(str(path))
    assert (loaded.scale, loaded.architecture) == (4, "ESRGAN")
    image = picture((24, 16))
    out = np.asarray(enlarge.run_model(loaded, image), dtype=np.float32)
    assert out.shape == (64, 96, 3)
    assert np.abs(out - reference(module, image)).max() <= 1.0


def test_a_real_esrgan_x2_file_with_pixel_unshuffle_enlarges_twice(tmp_path):
    module = tiny_rrdbnet(upsamples=2, unshuffle=2)
    save_file(new_layout(module.state_dict()), tmp_path / "x2.safetensors")
    loaded = load_upscaler(str(tmp_path / "x2.safetensors"))
    assert loaded.scale == 2
    out = enlarge.run_model(loaded, picture((16, 16)))
    assert out.size == (32, 32)


@pytest.mark.parametrize("prelu", [True, False])
def test_a_compact_realesrgan_file_loads_with_its_scale(tmp_path, prelu):
    torch.manual_seed(0)
    module = SRVGGNetCompact(3, features=8, convs=3, scale=4, prelu=prelu)
    save_file(module.state_dict(), tmp_path / "compact.safetensors")
    loaded = load_upscaler(str(tmp_path / "compact.safetensors"))
    assert (loaded.scale, loaded.architecture) == (4, "RealESRGAN compact")
    image = picture((16, 16))
    out = np.asarray(enlarge.run_model(loaded, image), dtype=np.float32)
    assert np.abs(out - reference(module, image)).max() <= 1.0


def test_a_large_picture_runs_in_pieces_with_the_one_piece_result(tmp_path, monkeypatch):
    torch.manual_seed(0)
    module = SRVGGNetCompact(3, features=8, convs=2, scale=2)
    save_file(module.state_dict(), tmp_path / "2x.safetensors")
    loaded = load_upscaler(str(tmp_path / "2x.safetensors"))
    monkeypatch.setattr(enlarge, "SR_TILE", 32)
    monkeypatch.setattr(enlarge, "SR_OVERLAP", 8)
    image = picture((80, 56))
    pieces: list[tuple[int, int]] = []
    out = np.asarray(
        enlarge.run_model(loaded, image, tile_done=lambda d, n: pieces.append((d, n))), np.float32
    )
    assert len(pieces) == pieces[0][1] > 1
    # A 3x3 convolution stack sees a few pixels past a piece's edge; the feathered blend
    # keeps what differs at the cut small.
    assert np.abs(out - reference(module, image)).mean() < 2.0


def test_a_pickle_upscaler_is_refused_without_consent(tmp_path):
    path = tmp_path / "4x-old.pth"
    torch.save(tiny_rrdbnet().state_dict(), path)
    with pytest.raises(EngineError, match="pickle file and was refused"):
        load_upscaler(str(path))
    assert load_upscaler(str(path), allow_pickle=True).scale == 4


def test_a_file_that_is_no_upscaler_is_named_as_such(tmp_path):
    save_file({"weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(EngineError, match="not an upscaler model DiffusionDesk can read"):
        load_upscaler(str(tmp_path / "other.safetensors"))


def test_upscalers_are_found_by_name_in_the_upscale_models_folder(tmp_path):
    folder = tmp_path / "models" / "upscale_models"
    folder.mkdir(parents=True)
    save_file(new_layout(tiny_rrdbnet().state_dict()), folder / "4x-Tiny.safetensors")
    assert load_upscaler("4x-Tiny", (str(tmp_path / "models"),)).scale == 4


def test_an_upscale_job_with_a_model_needs_no_diffusion_model(engine, recorder, tmp_path):
    save_file(new_layout(tiny_rrdbnet().state_dict()), tmp_path / "4x.safetensors")
    up = Upscale(scale=2, upscaler=str(tmp_path / "4x.safetensors"))
    r = request(init_image=picture((40, 24)), width=40, height=24, upscale=up, model="nowhere")
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    assert result.images[0].size == (80, 48)
    assert recorder.of(result.job_id, Step)  # progress per piece


def test_a_lanczos_upscale_job_enlarges_the_picture(engine):
    r = request(init_image=picture((32, 32)), upscale=Upscale(scale=3))
    result = engine.generate(r, WAIT)
    assert isinstance(result, Finished), result
    expected = picture((32, 32)).resize((96, 96), Image.Resampling.LANCZOS)
    assert (np.asarray(result.images[0]) == np.asarray(expected)).all()


def test_a_latent_upscaler_cannot_enlarge_a_finished_picture(engine):
    r = request(init_image=picture((32, 32)), upscale=Upscale(upscaler="Latent"))
    result = engine.generate(r, WAIT)
    assert isinstance(result, Failed)
    assert "works only inside a hires fix" in result.message
