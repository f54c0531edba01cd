"""Out of memory on the CPU is reported as out of memory with a suggestion (running and
loading); misuse of the Python API fails at once with a clear error. The worker lives on."""

from __future__ import annotations

import contextlib

import pytest
import torch
from engine_helpers import TINY, WAIT, request
from reliability_helpers import next_job_finishes, one_sentence
from tiny_models import save_tiny_model

from engine.api import ErrorKind, Failed, Finished, JobResultPruned

CPU_ALLOCATOR = (
    "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"
)


@contextlib.contextmanager
def raising_in(module: torch.nn.Module, exc: BaseException):
    def hook(*_):
        raise exc

    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def out_of_memory(engine, req=None) -> Failed:
    result = engine.generate(req or request(), WAIT)
    assert isinstance(result, Failed), result
    assert result.error == ErrorKind.OUT_OF_MEMORY, result
    one_sentence(result.message)
    return result


@pytest.mark.parametrize(
    "exc",
    [RuntimeError(CPU_ALLOCATOR), MemoryError(), torch.OutOfMemoryError("CUDA out of memory")],
    ids=["cpu-allocator", "memory-error", "cuda"],
)
def test_out_of_memory_while_running_is_reported_with_a_suggestion(engine, tiny_models, exc):
    unet = tiny_models.get(TINY, lambda *_: None, lambda: False).pipe.unet
    with raising_in(unet, exc):
        result = out_of_memory(engine)
    next_job_finishes(engine)
    assert "Out of memory making 1 image(s) of 32x32" in result.message
    assert "smaller size or batch" in result.message
    assert "close other programs" in result.message  # the stand-in engine runs on the CPU


def test_out_of_memory_in_the_final_decode(engine, tiny_models):
    vae = tiny_models.get(TINY, lambda *_: None, lambda: False).pipe.vae
    with raising_in(vae.decoder, RuntimeError(CPU_ALLOCATOR)):
        out_of_memory(engine)
    next_job_finishes(engine)


def test_memory_error_while_loading_is_out_of_memory(engine, tiny_models):
    def no_memory() -> None:
        raise MemoryError()

    tiny_models.before_load = no_memory
    try:
        result = engine.generate(request(), WAIT)
    finally:
        tiny_models.before_load = None
    assert isinstance(result, Failed) and result.error == ErrorKind.OUT_OF_MEMORY
    one_sentence(result.message)
    next_job_finishes(engine)


@pytest.mark.parametrize("exc", [RuntimeError(CPU_ALLOCATOR), MemoryError()])
def test_the_real_model_manager_reports_out_of_memory_while_loading(
    real_engine, tmp_path, monkeypatch, exc
):
    from engine.models import ModelManager

    folder = save_tiny_model(tmp_path / "tiny-model")

    def load(*_args, **_kwargs):
        raise exc

    monkeypatch.setattr(ModelManager, "_load_folder", load)
    result = real_engine.generate(request(model=str(folder)), WAIT)
    assert isinstance(result, Failed) and result.error == ErrorKind.OUT_OF_MEMORY, result
    assert result.message.startswith(f"Not enough memory to load {folder}")
    assert "close other programs" in result.message
    one_sentence(result.message)
    next_job_finishes(real_engine)


# ----------------------------------------------------------------------------- API misuse


@pytest.mark.parametrize("thing", [None, "a red circle", {"prompt": "a"}, 42])
def test_submit_of_something_that_is_not_a_request_raises_type_error_at_once(engine, thing):
    with pytest.raises(TypeError, match="submit\\(\\) takes a GenerationRequest"):
        engine.submit(thing)
    next_job_finishes(engine)


def test_wait_on_a_job_whose_result_was_pruned_says_so(engine, monkeypatch):
    import engine.worker as worker

    monkeypatch.setattr(worker, "KEEP_RESULTS", 2)
    first = engine.submit(request(steps=1))
    assert isinstance(engine.wait(first, WAIT), Finished)
    for _ in range(3):
        engine.generate(request(steps=1), WAIT)
    with pytest.raises(JobResultPruned) as caught:
        engine.wait(first)
    assert f"Job {first}" in str(caught.value) and "pruned" in str(caught.value)
    assert caught.value.job_id == first
    next_job_finishes(engine)


def test_older_results_keep_their_images_but_drop_their_step_previews(engine, monkeypatch):
    import engine.worker as worker

    monkeypatch.setattr(worker, "KEEP_RESULT_PREVIEWS", 1)
    first = engine.generate(request(steps=2), WAIT)
    assert isinstance(first, Finished) and len(first.step_previews) == 2
    engine.generate(request(steps=2), WAIT)
    older = engine.wait(first.job_id)
    assert isinstance(older, Finished)
    assert older.images and older.step_previews == () and older.noisy_step_previews == ()
    newest = engine.generate(request(steps=2), WAIT)
    assert isinstance(newest, Finished) and len(newest.step_previews) == 2


def test_wait_on_a_job_that_never_existed_is_a_key_error(engine):
    with pytest.raises(KeyError, match="no job 999"):
        engine.wait(999)
    assert engine.cancel(999) is False
    next_job_finishes(engine)


def test_submit_after_shutdown_says_the_engine_is_shut_down(tiny_models):
    from engine.worker import Engine

    eng = Engine(tiny_models)
    eng.shutdown(10)
    with pytest.raises(RuntimeError, match="shut down"):
        eng.submit(request())
