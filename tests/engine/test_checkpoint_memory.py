"""SD 1.x / 2.x / XL single checkpoints go through the memory policy like every other
model: planned from the file's header before a weight is read, said in the loading
stages, refused up front with the numbers when they cannot fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline
from model_helpers import Recorder, never, write_checkpoint
from safetensors.torch import save_file

from engine import memory_policy, single_file
from engine.api import EngineError, ErrorKind
from engine.models import ModelManager

PARTS = {"unet": (single_file.UNET_PREFIX,), "vae": single_file.VAE_PREFIXES}


def test_a_checkpoints_parts_are_weighed_by_their_key_prefixes_at_run_precision(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.safetensors"
    save_file(
        {
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1000, dtype=torch.float16),
            "first_stage_model.decoder.conv_in.weight": torch.zeros(10, 10, dtype=torch.float16),
            "cond_stage_model.transformer.x": torch.zeros(50, dtype=torch.float16),
        },
        path,
    )  # fmt: skip
    parts = memory_policy.checkpoint_parts(path, torch.float32, PARTS, rest="text encoders")
    assert parts == {"unet": 4000, "vae": 400, "text encoders": 200}
    pickled = tmp_path / "m.ckpt"
    pickled.write_bytes(b"\0" * 1234)  # not read: a pickle's parts show only once loaded
    assert memory_policy.checkpoint_parts(pickled, torch.float32, PARTS, "rest") == {"rest": 1234}


def test_an_sd_checkpoint_is_planned_before_loading_and_says_so(
    tiny_configs: Path, tmp_path: Path
) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "sd15.safetensors")
    progress = Recorder()
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(path), progress, never)
    stages = [s for s, _ in progress.events]
    assert stages[0] == f"reading {path.name}"  # its header: the weights come after
    assert stages[1].startswith("memory: all on the device (model 0.0 GB, memory ")
    assert model.notes == () and model.family == "sd1"


def test_an_sd_checkpoint_too_big_for_memory_is_refused_before_it_is_read(
    tiny_configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "big.safetensors")
    monkeypatch.setattr(memory_policy, "system_free", lambda: 10_000)
    read: list[Path] = []
    monkeypatch.setattr(single_file, "read_checkpoint", lambda p: read.append(p))
    progress = Recorder()
    with pytest.raises(EngineError) as caught:
        ModelManager(device="cpu", config_root=tiny_configs).get(str(path), progress, never)
    assert caught.value.kind == ErrorKind.OUT_OF_MEMORY
    assert caught.value.message.startswith("big.safetensors needs about ")
    assert "cannot fit" in caught.value.message and not read
