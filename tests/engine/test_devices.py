"""Device and dtype policy."""

from __future__ import annotations

import pytest
import torch

from engine import devices
from engine.api import EngineError, ErrorKind


def test_auto_on_a_cpu_only_machine_is_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    policy = devices.resolve()
    assert policy.device == torch.device("cpu")
    assert policy.dtype == torch.float32
    assert policy.description == "cpu (float32)"


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
