"""Device and dtype policy."""

from __future__ import annotations

import pytest
import torch

from engine import devices
from engine.api import EngineError, ErrorKind


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    return monkeypatch


def test_auto_on_a_cpu_without_bfloat16_units_is_float32_and_says_why(
    cpu_only: pytest.MonkeyPatch,
) -> None:
    cpu_only.setattr(devices, "cpu_bf16_units", lambda: None)
    policy = devices.resolve()
    assert policy.device == torch.device("cpu")
    assert policy.dtype == torch.float32 and not policy.channels_last
    assert policy.description == "cpu (float32: this CPU has no bfloat16 units)"


@pytest.mark.parametrize("units", ["AMX", "AVX512-BF16"])
def test_auto_on_a_cpu_with_bfloat16_units_is_bfloat16_channels_last(
    units: str, cpu_only: pytest.MonkeyPatch
) -> None:
    cpu_only.setattr(devices, "cpu_bf16_units", lambda: units)
    policy = devices.resolve()
    assert policy.dtype == torch.bfloat16 and policy.channels_last
    assert policy.description == f"cpu (bfloat16, channels_last: {units})"


def test_float32_stays_one_setting_away_on_a_bfloat16_cpu(cpu_only: pytest.MonkeyPatch) -> None:
    cpu_only.setattr(devices, "cpu_bf16_units", lambda: "AMX")
    policy = devices.resolve("auto", "float32")
    assert policy.dtype == torch.float32 and not policy.channels_last
    assert policy.description == "cpu (float32)"


def test_cpu_flags_name_the_bfloat16_units(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_flags = devices._cpuinfo_flags

    def flags_of(line: str) -> set[str]:
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\n{line}\n")
        return read_flags(info)

    assert {"amx_bf16", "avx512_bf16"} <= flags_of("flags\t\t: fpu avx512_bf16 amx_bf16 amx_tile")
    assert devices._cpuinfo_flags(tmp_path / "missing") == set()
    for line, expected in [
        ("flags : fpu avx2 avx512f avx512_bf16 amx_bf16", "AMX"),
        ("flags : fpu avx2 avx512f avx512_bf16", "AVX512-BF16"),
        ("flags : fpu avx2 avx512f", None),
    ]:
        monkeypatch.setattr(devices, "_cpuinfo_flags", lambda line=line: flags_of(line))
        devices.cpu_bf16_units.cache_clear()
        assert devices.cpu_bf16_units() == expected
    devices.cpu_bf16_units.cache_clear()


def test_apply_layout_makes_convolutions_channels_last_only_in_bfloat16() -> None:
    conv = torch.nn.Conv2d(4, 8, 3)
    devices.apply_layout(devices.DevicePolicy(torch.device("cpu"), torch.float32), conv)
    assert conv.weight.is_contiguous()
    policy = devices.DevicePolicy(torch.device("cpu"), torch.bfloat16, channels_last=True)
    devices.apply_layout(policy, conv, None)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_auto_prefers_cuda_then_mps_in_half_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("cuda")
    assert devices.resolve_dtype("auto", torch.device("cuda")) == torch.float16
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("mps")
    assert devices.resolve_dtype("auto", torch.device("mps")) == torch.float16


def test_cpu_overrides() -> None:
    assert devices.resolve("cpu", "bfloat16").dtype == torch.bfloat16
    assert devices.resolve("cpu", "bfloat16").description == "cpu (bfloat16, channels_last)"
    assert devices.resolve("CPU", "float32").description == "cpu (float32)"
    with pytest.raises(EngineError) as err:
        devices.resolve("cpu", "float16")
    assert err.value.kind == ErrorKind.BAD_INPUT and "float32" in err.value.message


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_unavailable_device_is_a_clear_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    with pytest.raises(EngineError) as err:
        devices.resolve_device(name)
    assert err.value.kind == ErrorKind.BAD_INPUT
    assert "not available" in err.value.message or "no CUDA GPU" in err.value.message


def test_unknown_names() -> None:
    with pytest.raises(EngineError, match="Unknown device"):
        devices.resolve_device("tpu")
    with pytest.raises(EngineError, match="Unknown precision"):
        devices.resolve_dtype("int8", torch.device("cpu"))


def test_missing_gpu_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(EngineError, match="GPU 3 does not exist"):
        devices.resolve_device("cuda:3")
