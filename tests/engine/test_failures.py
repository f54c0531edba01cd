"""A failing job never kills the worker; errors say whose fault they were."""

from __future__ import annotations

import contextlib

import torch
from engine_helpers import TINY, WAIT, request

from engine.api import ErrorKind, Failed, Finished


@contextlib.contextmanager
def unet_hook(tiny_models, hook):
    unet = tiny_models.get(TINY, lambda *_: None, lambda: False).pipe.unet
    handle = unet.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_unknown_model_fails_and_the_next_job_runs(engine):
    result = engine.generate(request(model="/nowhere/model.safetensors"), WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.MODEL
    assert isinstance(engine.generate(request(), WAIT), Finished)


def test_internal_error_carries_a_traceback(engine, tiny_models):
    def boom(*_):
        raise ValueError("boom")

    with unet_hook(tiny_models, boom):
        result = engine.generate(request(), WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.INTERNAL
    assert "boom" in result.message and "Traceback" in result.detail
    assert isinstance(engine.generate(request(), WAIT), Finished)


def test_out_of_memory_is_reported_and_memory_freed(engine, tiny_models, monkeypatch):
    import engine.worker as worker

    freed = []
    monkeypatch.setattr(worker, "free_memory", lambda: freed.append(True))

    def oom(*_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    with unet_hook(tiny_models, oom):
        result = engine.generate(request(), WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.OUT_OF_MEMORY
    assert "smaller size" in result.message
    assert freed
    with unet_hook(tiny_models, lambda *_: (_ for _ in ()).throw(RuntimeError("out of memory"))):
        again = engine.generate(request(), WAIT)
    assert isinstance(again, Failed) and again.error == ErrorKind.OUT_OF_MEMORY
    assert isinstance(engine.generate(request(), WAIT), Finished)


def test_nan_output_suggests_float32(engine, tiny_models, recorder):
    def nan(_module, _inputs, output):
        output[0].fill_(float("nan"))
        return output

    with unet_hook(tiny_models, nan):
        result = engine.generate(request(steps=5), WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.MODEL
    assert "float32" in result.message
    assert len(recorder.of(result.job_id)) < 5 + 4  # stopped at the first bad step
    assert isinstance(engine.generate(request(), WAIT), Finished)


def test_black_output_suggests_float32(engine, tiny_models):
    vae = tiny_models.get(TINY, lambda *_: None, lambda: False).pipe.vae

    def black(_module, _inputs, output):
        return output * 0 - 1

    handle = vae.decoder.register_forward_hook(black)
    try:
        result = engine.generate(request(), WAIT)
    finally:
        handle.remove()
    assert isinstance(result, Failed) and "float32" in result.message


def test_a_failing_listener_does_not_stop_the_engine(engine):
    def bad_listener(_event):
        raise RuntimeError("listener bug")

    engine.add_listener(bad_listener)
    assert isinstance(engine.generate(request(), WAIT), Finished)


def test_bad_model_files_fail_cleanly_with_the_real_model_manager(tmp_path):
    from tiny_models import save_tiny_model

    from engine.worker import Engine

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"this is not a checkpoint")
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"\x80\x04K\x01.")
    not_a_model = tmp_path / "photos"
    not_a_model.mkdir()
    good = save_tiny_model(tmp_path / "good")
    real = Engine(device="cpu")
    try:
        for source in (broken, pickle, not_a_model, tmp_path / "missing.safetensors"):
            result = real.generate(request(model=str(source)), WAIT)
            assert isinstance(result, Failed) and result.error == ErrorKind.MODEL, result
            assert str(source.name) in result.message
        assert "pickle" in real.generate(request(model=str(pickle)), WAIT).message
        assert isinstance(real.generate(request(model=str(good)), WAIT), Finished)
    finally:
        real.shutdown(30)
