"""The memory policy: all on the device, model CPU offload, group offload or a clear
refusal, from the model's size and the free memory (mocked: no GPU here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine import memory_policy
from engine.api import EngineError, ErrorKind
from engine.memory_policy import GIB, Placement, choose

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")
FLUX = {
    "transformer": 24 * GIB,
    "text_encoder_2": 9 * GIB,
    "text_encoder": GIB // 4,
    "vae": GIB // 6,
}


def test_a_model_that_fits_on_the_gpu_stays_there() -> None:
    plan = choose(FLUX, CUDA, free_on_device=80 * GIB, free_in_system=64 * GIB)
    assert plan.placement is Placement.ON_DEVICE
    assert plan.label.startswith("all on the device (model 33.4 GB, GPU 80.0 GB free)")
    assert plan.notes == ()  # the plain placement goes unmentioned while running


def test_a_model_whose_largest_part_fits_moves_part_by_part() -> None:
    plan = choose(FLUX, CUDA, free_on_device=30 * GIB, free_in_system=64 * GIB)
    assert plan.placement is Placement.MODEL_OFFLOAD
    assert "model CPU offload" in plan.label
    assert plan.notes == (plan.label,)


def test_a_transformer_larger_than_the_gpu_streams_in_block_groups() -> None:
    plan = choose(FLUX, CUDA, free_on_device=8 * GIB, free_in_system=64 * GIB)
    assert plan.placement is Placement.GROUP_OFFLOAD


def test_the_free_gpu_memory_comes_from_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[torch.device] = []

    def mem_get_info(device: torch.device) -> tuple[int, int]:
        asked.append(device)
        return 12 * GIB, 24 * GIB

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(memory_policy, "system_free", lambda: 64 * GIB)
    plan = choose({"transformer": 6 * GIB, "vae": GIB}, CUDA)
    assert asked == [CUDA]
    assert plan.placement is Placement.ON_DEVICE and plan.device_free == 12 * GIB


def test_a_model_larger_than_the_computers_memory_is_refused_with_the_numbers() -> None:
    with pytest.raises(EngineError) as caught:
        choose(FLUX, CUDA, free_on_device=8 * GIB, free_in_system=16 * GIB, what="FLUX.1 dev")
    assert caught.value.kind == ErrorKind.OUT_OF_MEMORY
    assert "FLUX.1 dev needs about" in caught.value.message
    assert "the GPU has 8.0 GB free and the computer 16.0 GB" in caught.value.message
    assert "GGUF" in caught.value.message


def test_on_the_cpu_a_model_fits_in_memory_or_is_refused() -> None:
    assert choose(FLUX, CPU, free_in_system=64 * GIB).placement is Placement.ON_DEVICE
    assert choose(FLUX, CPU, free_in_system=64 * GIB).label.endswith("memory 64.0 GB free)")
    with pytest.raises(EngineError, match="this computer has 20.0 GB of memory free"):
        choose(FLUX, CPU, free_in_system=20 * GIB)


class RecordingPipe:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def to(self, device: torch.device) -> None:
        self.calls.append(("to", {"device": device}))

    def enable_model_cpu_offload(self, **kwargs: object) -> None:
        self.calls.append(("enable_model_cpu_offload", kwargs))

    def enable_group_offload(self, **kwargs: object) -> None:
        self.calls.append(("enable_group_offload", kwargs))


@pytest.mark.parametrize(
    ("free", "call"),
    [(80, "to"), (30, "enable_model_cpu_offload"), (8, "enable_group_offload")],
)
def test_each_plan_puts_the_pipeline_where_it_says(free: int, call: str) -> None:
    plan = choose(FLUX, CUDA, free_on_device=free * GIB, free_in_system=64 * GIB)
    pipe = RecordingPipe()
    memory_policy.apply(pipe, plan, CUDA)
    assert [name for name, _ in pipe.calls] == [call]
    kwargs = pipe.calls[0][1]
    if call == "enable_group_offload":
        assert kwargs["onload_device"] == CUDA and kwargs["offload_device"] == CPU


def test_a_files_size_is_counted_at_the_precision_it_will_run_in(tmp_path: Path) -> None:
    half = tmp_path / "encoder_fp16.safetensors"
    save_file({"w": torch.zeros(256, 256, dtype=torch.float16)}, half)
    fp8 = tmp_path / "model_fp8.safetensors"
    save_file({"w": torch.zeros(256, 256).to(torch.float8_e4m3fn)}, fp8)
    assert memory_policy.file_bytes_at(half, torch.float32) == 256 * 256 * 4
    assert memory_policy.file_bytes_at(half, torch.bfloat16) == 256 * 256 * 2
    assert memory_policy.file_bytes_at(fp8, torch.bfloat16) == 256 * 256  # stays fp8


def test_a_diffusers_folder_is_planned_before_loading_and_says_so(tiny_folder: Path) -> None:
    from model_helpers import Recorder, never

    from engine.models import ModelManager

    progress = Recorder()
    model = ModelManager(device="cpu").get(str(tiny_folder), progress, never)
    stages = [s for s, _ in progress.events]
    assert stages[0].startswith("memory: all on the device (model 0.0 GB, memory ")
    assert model.notes == ()


def test_a_folder_too_big_for_memory_is_refused_before_any_weight_is_read(
    tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_helpers import Recorder, never

    from engine.models import ModelManager

    monkeypatch.setattr(memory_policy, "system_free", lambda: 10_000)
    progress = Recorder()
    with pytest.raises(EngineError) as caught:
        ModelManager(device="cpu").get(str(tiny_folder), progress, never)
    assert caught.value.kind == ErrorKind.OUT_OF_MEMORY
    assert str(tiny_folder) in caught.value.message
    assert not any(s.startswith("loading") for s, _ in progress.events)
