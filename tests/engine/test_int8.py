"""The int8 UNet on the tiny models: the first job at a size keeps its UNet inputs, the
next quantizes with them (once), checks the int8 graph against the bfloat16 one on
held-out calls and runs it ("openvino-int8" always, "auto" where the check held), with
pictures close to the bfloat16/float32 ones; failures and cancels leave nothing
half-done."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import TINY, WAIT, Recorder, request

from engine.api import Cancelled, EngineError, Finished, ModelLoading, Started, Step
from engine.backends import choice, decoder_int8, int8
from engine.worker import Engine


def test_calibration_inputs_round_trip_as_an_even_spread_of_the_run(tmp_path: Path):
    recorder = int8.Recorder(tmp_path / "int8" / "calibration-64x64.npz")
    for step in range(20):
        recorder.add({"sample": np.full((2, 4, 8, 8), step, np.float32), "timestep": np.ones(2)})
    recorder.add({"sample": np.zeros((1, 4, 8, 8), np.float32), "timestep": np.ones(1)})
    assert len(recorder.samples) == 20  # the halved batch after a cut-off is not kept
    assert recorder.save()
    samples = int8.load_calibration(recorder.path)
    steps = [int(s["sample"][0, 0, 0, 0]) for s in samples]
    assert len(samples) == int8.CALIBRATION_SAMPLES and steps[0] == 0 and steps[-1] == 19
    assert steps == sorted(steps)
    held_out = [int(s["sample"][0, 0, 0, 0]) for s in int8.load_calibration(recorder.path, True)]
    assert len(held_out) == int8.VALIDATION_SAMPLES and not set(held_out) & set(steps)
    assert held_out == sorted(held_out) and held_out[-1] - held_out[0] >= 10  # spread out
    assert not [p for p in recorder.path.parent.iterdir() if p.name.startswith(".")]


def test_the_sensitive_convolutions_stay_bfloat16_by_their_place_in_the_unet():
    pytest.importorskip("openvino")
    import openvino as ov

    names = [
        "__module.unet.conv_in/aten::_convolution/Convolution",
        "__module.unet.down_blocks.0.resnets.0.conv1/aten::_convolution/Convolution",
        "__module.unet.down_blocks.1.resnets.0.conv1/aten::_convolution/Convolution",
        "__module.unet.down_blocks.1.resnets.0.conv_shortcut/aten::_convolution/Convolution",
        "__module.unet.up_blocks.1.resnets.0.conv1/aten::_convolution/Convolution",
        "__module.unet.up_blocks.2.resnets.0.conv1/aten::_convolution/Convolution",
        "__module.unet.conv_out/aten::_convolution/Convolution",
    ]
    x = ov.opset13.parameter([1, 4, 8, 8], ov.Type.f32, name="sample")
    node = x
    for name in names:
        weight = ov.opset13.constant(np.ones((4, 4, 1, 1), np.float32))
        node = ov.opset13.convolution(node, weight, [1, 1], [0, 0], [0, 0], [1, 1])
        node.set_friendly_name(name)
    kept = int8.kept_bfloat16(ov.Model([node], [x]))
    # up_blocks.2 is the last up block here (SDXL's layout): it stays, up_blocks.1 does not.
    assert sorted(kept) == sorted(names[i] for i in (0, 1, 3, 5, 6))


def test_only_the_feed_forward_projection_runs_int8_with_its_activations():
    pytest.importorskip("openvino")
    import openvino as ov

    block = "__module.unet.down_blocks.1.attentions.0.transformer_blocks.0"
    names = [
        f"{block}.attn1.to_q/aten::linear/MatMul",
        f"{block}.attn2.to_v/aten::linear/MatMul",
        f"{block}.ff.net.0.proj/aten::linear/MatMul",
        f"{block}.ff.net.2/aten::linear/MatMul",
    ]
    x = ov.opset13.parameter([1, 4], ov.Type.f32, name="sample")
    node = x
    for name in names:
        node = ov.opset13.matmul(
            node, ov.opset13.constant(np.ones((4, 4), np.float32)), False, True
        )
        node.set_friendly_name(name)
    assert int8.int8_matmuls(ov.Model([node], [x])) == [names[2]]


def test_a_run_with_too_few_unet_calls_keeps_no_calibration(tmp_path: Path):
    recorder = int8.Recorder(tmp_path / "calibration-64x64.npz")
    recorder.add({"sample": np.zeros((2, 4, 8, 8), np.float32)})
    assert not recorder.save() and not recorder.path.exists()


def test_int8_without_nncf_is_refused_in_one_sentence(monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setattr(int8, "available", lambda: False)
    with pytest.raises(EngineError, match="needs the nncf package"):
        choice.check_backend_name("openvino-int8")


# ----------------------------------------------------------------------------- engine


@pytest.fixture
def make_engine(tiny_models, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    monkeypatch.setenv("DIFFUSIONDESK_CACHE", str(tmp_path))
    engines: list[Engine] = []

    def make(backend: str) -> tuple[Engine, Recorder]:
        engine = Engine(tiny_models, backend=backend)
        events = Recorder()
        engine.add_listener(events)
        engines.append(engine)
        return engine, events

    yield make
    for engine in engines:
        engine.shutdown(10)


def psnr(a: Finished, b: Finished) -> float:
    x = np.asarray(a.images[0]).astype(float)
    y = np.asarray(b.images[0]).astype(float)
    mse = float(((x - y) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.slow
def test_the_second_job_at_a_size_runs_an_int8_unet_calibrated_on_the_first(make_engine, tmp_path):
    engine, events = make_engine("openvino-int8")
    job = request(steps=6, width=64, height=64)
    first = engine.generate(job, WAIT)
    assert isinstance(first, Finished), first
    assert first.warnings == (int8.CALIBRATING.format(size="64x64"), decoder_int8.CALIBRATING)
    assert events.of(first.job_id, Started)[0].device.endswith(", OpenVINO")
    folders = list((tmp_path / "openvino").glob("*/int8-2"))
    assert [p.name for p in folders[0].iterdir()] == ["calibration-64x64.npz"]
    decoder_folder = folders[0].parent / "int8"
    assert [p.name for p in decoder_folder.iterdir()] == ["decoder-calibration.npz"]

    second = engine.generate(job, WAIT)
    assert isinstance(second, Finished), second
    assert events.of(second.job_id, Started)[0].device.endswith(", OpenVINO int8")
    assert len(events.of(second.job_id, Step)) == 6  # previews as before
    stages = [e.stage for e in events.of(second.job_id, ModelLoading)]
    assert any(stage.startswith("quantizing the UNet to int8 for 64x64") for stage in stages)
    assert any(stage.startswith("checking the int8 UNet against bfloat16") for stage in stages)
    assert int8.is_ready(folders[0] / f"unet-64x64-r{int8.RECIPE}.xml")
    quality = int8.read_quality(folders[0].parent, "64x64")
    assert quality is not None and 0.9 < quality <= 1.0
    # Chosen int8 runs whatever the check said, and says so when it is below the bar.
    below = int8.BELOW_BAR.format(size="64x64", correlation=quality, bar=int8.QUALITY_BAR)
    assert second.warnings == ((below,) if quality <= int8.QUALITY_BAR else ())
    # The same picture, within int8's rounding (bfloat16 OpenVINO is the first job's).
    assert psnr(second, first) > 25
    # Quantized once: the third job only compiles (already compiled: nothing).
    third = engine.generate(job, WAIT)
    stages = [e.stage for e in events.of(third.job_id, ModelLoading)]
    assert not any("quantizing" in stage for stage in stages)
    assert np.array_equal(np.asarray(third.images[0]), np.asarray(second.images[0]))
    # Another size calibrates on its own first job.
    other = engine.generate(request(steps=4, width=32, height=32), WAIT)
    assert other.warnings == (int8.CALIBRATING.format(size="32x32"),)


@pytest.mark.slow
def test_a_cancelled_first_job_keeps_no_calibration(make_engine, tmp_path):
    engine, _ = make_engine("openvino-int8")

    def cancel_at_two(event):
        if isinstance(event, Step) and event.step == 2:
            engine.cancel(event.job_id)

    engine.add_listener(cancel_at_two)
    result = engine.generate(request(steps=5, width=64, height=64), WAIT)
    assert isinstance(result, Cancelled)
    assert not list((tmp_path / "openvino").glob("*/int8-2/calibration-*"))


@pytest.mark.slow
def test_a_failed_quantization_runs_bfloat16_and_is_not_retried(make_engine, tmp_path, monkeypatch):
    engine, events = make_engine("openvino-int8")
    job = request(model=TINY, steps=3, width=64, height=64)
    engine.generate(job, WAIT)  # calibrates
    calibration = next((tmp_path / "openvino").glob("*/int8-2/calibration-64x64.npz"))
    calibration.write_bytes(b"not an npz file")  # the quantizing process fails reading it
    starts: list[int] = []
    real_popen = int8.subprocess.Popen
    monkeypatch.setattr(
        int8.subprocess, "Popen", lambda *a, **k: starts.append(1) or real_popen(*a, **k)
    )
    failed = engine.generate(job, WAIT)
    assert isinstance(failed, Finished), failed
    (warning,) = failed.warnings
    assert warning.startswith("int8 quantization failed here (ValueError: ")
    assert events.of(failed.job_id, Started)[0].device.endswith(", OpenVINO")
    again = engine.generate(job, WAIT)
    assert isinstance(again, Finished) and again.warnings == failed.warnings
    assert starts == [1]
    assert not list((tmp_path / "openvino").glob("*/int8-2/unet-64x64*.xml"))


@pytest.mark.slow
def test_too_little_free_memory_defers_int8_without_writing_anything(
    make_engine, tmp_path, monkeypatch
):
    engine, events = make_engine("openvino-int8")
    job = request(model=TINY, steps=3, width=64, height=64)
    engine.generate(job, WAIT)  # calibrates
    monkeypatch.setattr(int8, "free_memory", lambda: 10**6)
    deferred = engine.generate(job, WAIT)
    assert isinstance(deferred, Finished), deferred
    (warning,) = deferred.warnings
    assert warning.startswith("int8 at 64x64 waits for memory") and "0.0 GB is free" in warning
    assert events.of(deferred.job_id, Started)[0].device.endswith(", OpenVINO")
    folder = next((tmp_path / "openvino").glob("*/int8-2"))
    assert [p.name for p in folder.iterdir()] == ["calibration-64x64.npz"]  # no failure note
    monkeypatch.setattr(int8, "free_memory", lambda: 10**13)
    later = engine.generate(job, WAIT)
    assert events.of(later.job_id, Started)[0].device.endswith(", OpenVINO int8")


@pytest.mark.slow
def test_cancelling_while_it_quantizes_stops_the_quantizing_process(make_engine, tmp_path):
    engine, events = make_engine("openvino-int8")
    job = request(model=TINY, steps=3, width=64, height=64)
    engine.generate(job, WAIT)  # calibrates

    def cancel_when_quantizing(event):
        if isinstance(event, ModelLoading) and "quantizing" in event.stage:
            engine.cancel(event.job_id)

    engine.add_listener(cancel_when_quantizing)
    result = engine.generate(job, WAIT)
    assert isinstance(result, Cancelled), result
    assert not int8._children
    folder = next((tmp_path / "openvino").glob("*/int8-2"))
    assert [p.name for p in folder.iterdir()] == ["calibration-64x64.npz"]


@pytest.mark.parametrize(
    ("script", "said"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "signal 9 (out of memory?)"),
        (
            "import sys; print('noise'); "
            "print('ValueError: no MatMul', file=sys.stderr); sys.exit(1)",
            "ValueError: no MatMul",
        ),
    ],
    ids=["killed", "failed"],
)
def test_the_quantizing_process_says_why_it_stopped(tmp_path, monkeypatch, script, said):
    monkeypatch.setattr(int8, "_command", lambda *_: [sys.executable, "-c", script])
    with pytest.raises(int8.QuantizeFailed) as failure:
        int8.quantize_unet_apart(tmp_path, "64x64", lambda: False, poll=0.01)
    assert said in str(failure.value)
    assert not int8._children


def test_quantizing_needs_memory_in_proportion_to_the_unet(tmp_path, monkeypatch):
    (tmp_path / "unet.bin").write_bytes(bytes(1000))
    assert int8.memory_needed(tmp_path) == int(int8.MEMORY_PER_WEIGHT_BYTE * 1000)
    monkeypatch.setattr(int8, "free_memory", lambda: 100)
    with pytest.raises(int8.NotEnoughMemory, match="waits for memory"):
        int8.quantize_unet_apart(tmp_path, "64x64", lambda: False)


@pytest.mark.slow
@pytest.mark.parametrize("holds", [True, False], ids=["check-holds", "check-fails"])
def test_auto_runs_int8_only_where_its_check_held(make_engine, tmp_path, monkeypatch, holds):
    monkeypatch.setattr(choice, "measure_unet", lambda *_args: (2.0, 1.0))  # OpenVINO faster
    monkeypatch.setattr(int8, "QUALITY_BAR", -1.0 if holds else 1.0)
    engine, events = make_engine("auto")
    job = request(steps=6, width=64, height=64)
    first = engine.generate(job, WAIT)
    assert first.warnings == (int8.CALIBRATING.format(size="64x64"),)
    second = engine.generate(job, WAIT)
    assert isinstance(second, Finished), second
    folder = next((tmp_path / "openvino").glob("*/int8-2"))
    quality = int8.read_quality(folder.parent, "64x64")
    assert quality is not None
    device = events.of(second.job_id, Started)[0].device
    third = engine.generate(job, WAIT)
    stages = [e.stage for e in events.of(third.job_id, ModelLoading)]
    assert not any("quantizing" in stage or "checking" in stage for stage in stages)
    if holds:
        assert device.endswith(", OpenVINO int8") and not second.warnings
        assert events.of(third.job_id, Started)[0].device.endswith(", OpenVINO int8")
    else:
        kept_out = int8.KEPT_OUT.format(size="64x64", correlation=quality, bar=1.0)
        assert device.endswith(", OpenVINO") and second.warnings == (kept_out,)
        assert not int8.unet_xml(folder.parent, "64x64").exists()  # its gigabyte is gone
        assert events.of(third.job_id, Started)[0].device.endswith(", OpenVINO")
        assert not third.warnings  # said once
        assert np.array_equal(np.asarray(third.images[0]), np.asarray(second.images[0]))


def test_a_new_recipe_removes_the_int8_files_an_earlier_one_left(tmp_path: Path):
    folder = tmp_path / "int8-2"
    folder.mkdir()
    old = ["unet-64x64.xml", "unet-64x64.bin", "unet-64x64.json", "unet-64x64-r2.failed"]
    kept = [f"unet-64x64-r{int8.RECIPE}.json", "unet-64x640.xml", "calibration-64x64.npz"]
    for name in old + kept:
        (folder / name).write_text("x")
    int8.remove_earlier_recipes(tmp_path, "64x64")
    assert sorted(p.name for p in folder.iterdir()) == sorted(kept)


def test_calibration_calls_are_split_into_one_picture_each():
    call = {"sample": np.arange(4.0).reshape(2, 2), "timestep": np.array([5.0, 5.0])}
    halves = int8.one_picture_each([call])
    assert [h["sample"].tolist() for h in halves] == [[[0.0, 1.0]], [[2.0, 3.0]]]
    assert [h["timestep"].shape for h in halves] == [(1,), (1,)]
