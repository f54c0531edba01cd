"""The int8 VAE decoder (with the "openvino-int8" backend) on the tiny models: a job that
decodes in bfloat16 keeps its latents, the next quantizes the decoder with them once and
decodes in int8 at every size, close to the bfloat16 picture; a failed quantization
decodes in bfloat16 and is not retried; nothing is half-written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import WAIT, Recorder, request

from engine.api import Finished, ModelLoading, Started
from engine.backends import decoder_int8, int8
from engine.worker import Engine


def test_the_recorder_keeps_each_picture_of_a_batch_up_to_its_limit(tmp_path: Path):
    recorder = decoder_int8.LatentRecorder(tmp_path / "int8" / "decoder-calibration.npz")
    recorder.add(np.arange(3 * 4 * 8 * 8, dtype=np.float32).reshape(3, 4, 8, 8))
    recorder.add(np.full((1, 4, 8, 8), np.nan, np.float32))  # a broken decode is not kept
    recorder.add(np.ones((2, 4, 8, 8), np.float32))
    assert len(recorder.latents) == decoder_int8.MAX_LATENTS
    assert all(z.shape == (1, 4, 8, 8) for z in recorder.latents)
    assert recorder.save()
    loaded = decoder_int8.load_latents(recorder.path)
    assert [float(z[0, 0, 0, 1]) for z in loaded] == [1.0, 257.0, 513.0, 1.0]
    assert not [p for p in recorder.path.parent.iterdir() if p.name.startswith(".")]


def test_a_job_that_decoded_nothing_keeps_no_calibration(tmp_path: Path):
    recorder = decoder_int8.LatentRecorder(tmp_path / "decoder-calibration.npz")
    assert not recorder.save() and not recorder.path.exists()


def test_calibration_cuts_large_latents_into_tiles_of_one_shape():
    big = np.random.default_rng(0).standard_normal((1, 4, 64, 96)).astype(np.float32)
    samples = decoder_int8.calibration_samples([big])
    assert len(samples) == 6 and {s["z"].shape for s in samples} == {(1, 4, 32, 32)}
    assert np.array_equal(samples[1]["z"], big[..., :32, 32:64])
    small = np.zeros((1, 4, 8, 12), np.float32)
    mixed = decoder_int8.calibration_samples([big, small])
    assert {s["z"].shape for s in mixed} == {(1, 4, 8, 8)}
    assert len(mixed) == 8 * 12 + 1


def test_only_the_int8_backend_decodes_in_int8():
    assert not decoder_int8.wanted("auto") and not decoder_int8.wanted("openvino")
    assert decoder_int8.wanted("openvino-int8") == decoder_int8.available()


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


def _convolution_inputs(xml: Path) -> dict[str, str]:
    """Each convolution of the graph in xml: the type of the node feeding its input."""
    import openvino as ov

    graph = ov.Core().read_model(str(xml))
    return {
        op.get_friendly_name(): op.input_value(0).get_node().get_type_name()
        for op in graph.get_ordered_ops()
        if op.get_type_name() == "Convolution"
    }


def stages(events: Recorder, job_id: int) -> list[str]:
    return [e.stage for e in events.of(job_id, ModelLoading)]


@pytest.mark.slow
def test_the_next_job_decodes_with_an_int8_decoder_calibrated_on_the_last(make_engine, tmp_path):
    engine, events = make_engine("openvino-int8")
    job = request(steps=3, width=64, height=64)
    first = engine.generate(job, WAIT)
    assert isinstance(first, Finished), first
    assert decoder_int8.CALIBRATING in first.warnings
    ov_folder = next((tmp_path / "openvino").iterdir())
    assert decoder_int8.calibration_file(ov_folder).is_file()
    assert not decoder_int8.is_ready(decoder_int8.decoder_xml(ov_folder))

    second = engine.generate(job, WAIT)
    assert isinstance(second, Finished), second
    assert decoder_int8.CALIBRATING not in second.warnings
    assert any("quantizing the VAE decoder to int8" in s for s in stages(events, second.job_id))
    assert decoder_int8.is_ready(decoder_int8.decoder_xml(ov_folder))
    assert events.of(second.job_id, Started)[0].device.endswith(", OpenVINO int8")
    # Quantized convolutions, but not the ones that take the latents or make the pixels.
    fed_by = _convolution_inputs(decoder_int8.decoder_xml(ov_folder))
    ends = [k for k in fed_by if any(e in k for e in ("post_quant_conv", "conv_in", "conv_out"))]
    assert len(ends) == 3 and not any(fed_by[k] == "FakeQuantize" for k in ends)
    assert sum(v == "FakeQuantize" for v in fed_by.values()) >= len(fed_by) - 3 > 0
    # The same picture within int8's rounding (the UNet is int8 now as well).
    assert psnr(second, first) > 25

    third = engine.generate(job, WAIT)
    assert not any("quantizing" in s for s in stages(events, third.job_id))
    assert np.array_equal(np.asarray(third.images[0]), np.asarray(second.images[0]))
    # One int8 decoder serves every size: another size only compiles it.
    other = engine.generate(request(steps=2, width=32, height=32), WAIT)
    assert isinstance(other, Finished), other
    assert decoder_int8.CALIBRATING not in other.warnings
    compiled = stages(events, other.job_id)
    assert any("compiling the int8 VAE decoder for 32x32" in s for s in compiled)
    assert not list(decoder_int8.folder(ov_folder).glob("*.part-*"))


@pytest.mark.slow
def test_a_failed_decoder_quantization_decodes_in_bfloat16_once_and_for_all(
    make_engine, tmp_path, monkeypatch
):
    tries: list[int] = []

    def broken(_model, _samples):
        tries.append(1)
        raise RuntimeError("unsupported pattern for quantization")

    monkeypatch.setattr(decoder_int8, "quantize_model", broken)
    engine, _ = make_engine("openvino-int8")
    job = request(steps=2, width=64, height=64)
    engine.generate(job, WAIT)  # keeps the latents
    failed = engine.generate(job, WAIT)
    assert isinstance(failed, Finished), failed
    message = decoder_int8.FAILED.format(why="RuntimeError: unsupported pattern for quantization")
    assert message in failed.warnings
    again = engine.generate(job, WAIT)
    assert isinstance(again, Finished) and message in again.warnings
    assert tries == [1]
    ov_folder = next((tmp_path / "openvino").iterdir())
    assert not decoder_int8.decoder_xml(ov_folder).exists()
    # The UNet's int8 goes on regardless.
    assert int8.is_ready(int8.unet_xml(ov_folder, "64x64"))
