"""The OpenVINO backend on the tiny models: its pictures match torch's (and float32's),
it runs inside the same pipeline (previews, cancel, continue), its conversion is
cached, cancellable and never left half-written, and "auto" measures once and
remembers per size; deep cache runs on OpenVINO through the shallow-level graph."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import TINY, TINY_INPAINT, TINY_SDXL, WAIT, Recorder, box_mask, picture, request

from engine import devices
from engine.api import Cancelled, Finished, JobCancelled, ModelLoading, ResumeFrom, Started, Step
from engine.backends import choice, openvino_backend
from engine.worker import Engine

pytest.importorskip("openvino")
pytestmark = pytest.mark.slow  # each tiny model's conversion takes seconds


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ov-cache")


@pytest.fixture
def make_engine(tiny_models, ov_cache, monkeypatch):
    monkeypatch.setenv("DIFFUSIONDESK_CACHE", str(ov_cache))
    engines: list[Engine] = []

    def make(backend: str) -> tuple[Engine, Recorder]:
        engine = Engine(tiny_models, backend=backend)
        recorder = Recorder()
        engine.add_listener(recorder)
        engines.append(engine)
        return engine, recorder

    yield make
    for engine in engines:
        engine.shutdown(10)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def pixels(result: Finished) -> list[np.ndarray]:
    return [np.asarray(image).astype(int) for image in result.images]


@pytest.mark.parametrize(
    "source, extra",
    [
        (TINY, {"batch_size": 2}),
        (TINY_SDXL, {}),
        (TINY_INPAINT, {}),
        (TINY, {"init_image": picture(), "mask": box_mask(), "strength": 1.0}),
    ],
    ids=["sd1-batch", "sdxl", "9-channel-inpaint", "inpaint"],
)
def test_openvino_pictures_match_torch(make_engine, source, extra):
    job = request(model=source, steps=4, **extra)
    torch_engine, _ = make_engine("torch")
    reference = torch_engine.generate(job, WAIT)
    ov_engine, events = make_engine("openvino")
    result = ov_engine.generate(job, WAIT)
    assert isinstance(result, Finished), result
    started = events.of(result.job_id, Started)[0]
    assert started.device.endswith(", OpenVINO")
    assert len(events.of(result.job_id, Step)) == 4 and len(result.step_previews) == 4
    for ours, theirs in zip(pixels(result), pixels(reference), strict=True):
        assert np.abs(ours - theirs).max() <= 3


def test_a_bfloat16_model_runs_in_openvino_like_in_torch(make_engine, tiny_models):
    """The default policy on CPUs with bfloat16 units: bfloat16 + channels_last."""
    pipe = copy.deepcopy(tiny_models.get(TINY, lambda *_: None, lambda: False).pipe)
    policy = devices.DevicePolicy(torch.device("cpu"), torch.bfloat16, channels_last=True)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        torch.nn.Module.to(part, torch.bfloat16)
    devices.apply_layout(policy, pipe.unet, pipe.vae)
    base = tiny_models.get(TINY, lambda *_: None, lambda: False)
    tiny_models.variants["tiny-bf16"] = dataclasses.replace(
        base, source="tiny-bf16", pipe=pipe, dtype=torch.bfloat16
    )
    weights = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    job = request(model="tiny-bf16", steps=4)
    reference = make_engine("torch")[0].generate(job, WAIT)
    result = make_engine("openvino")[0].generate(job, WAIT)
    assert isinstance(result, Finished), result
    assert np.abs(pixels(result)[0] - pixels(reference)[0]).mean() < 2
    # The default fast path (bfloat16 in OpenVINO) against float32 torch: the same picture.
    float32 = make_engine("torch")[0].generate(request(steps=4), WAIT)
    assert psnr(pixels(result)[0], pixels(float32)[0]) > 30
    # Converted in float32 and put back: the same bfloat16 weights, still channels_last.
    assert all(torch.equal(weights[k], v) for k, v in pipe.unet.state_dict().items())
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_openvino_is_converted_once_and_then_read_from_the_cache(make_engine, ov_cache):
    engine, events = make_engine("openvino")
    first = engine.generate(request(steps=2), WAIT)
    assert isinstance(first, Finished), first
    again, events_again = make_engine("openvino")
    second = again.generate(request(steps=2, width=48), WAIT)
    assert isinstance(second, Finished), second
    stages = [e.stage for e in events_again.of(second.job_id, ModelLoading)]
    assert not any("converting" in stage for stage in stages)
    assert any("compiling OpenVINO for 48x32, batch 2" in stage for stage in stages)
    folders = [p for p in (ov_cache / "openvino").iterdir() if p.is_dir()]
    assert all(openvino_backend.is_cached(p) for p in folders)
    assert not [p for p in folders if ".part-" in p.name]


def test_openvino_runs_inside_the_pipeline_so_cancel_and_continue_work(make_engine):
    engine, events = make_engine("openvino")

    def cancel_at_two(event):
        if isinstance(event, Step) and event.step == 2:
            engine.cancel(event.job_id)

    engine.add_listener(cancel_at_two)
    cancelled = engine.generate(request(steps=5, scheduler="Euler"), WAIT)
    assert isinstance(cancelled, Cancelled) and cancelled.step == 2
    engine.remove_listener(cancel_at_two)
    resumed = engine.generate(request(resume=ResumeFrom(cancelled.job_id, 2)), WAIT)
    assert isinstance(resumed, Finished), resumed
    assert [s.step for s in events.of(resumed.job_id, Step)] == [3, 4, 5]
    full = engine.generate(request(steps=5, scheduler="Euler"), WAIT)
    assert np.abs(pixels(full)[0] - pixels(resumed)[0]).max() <= 2
    cut = engine.generate(request(steps=6, batch_size=2, guidance_cutoff=0.5), WAIT)
    assert isinstance(cut, Finished), cut


def test_cancel_during_conversion_leaves_no_half_written_cache(tiny_models, tmp_path):
    model = tiny_models.get(TINY_INPAINT, lambda *_: None, lambda: False)
    folder = tmp_path / "openvino" / "model"
    stages: list[str] = []
    with pytest.raises(JobCancelled):
        openvino_backend.convert_to_cache(
            model.pipe.unet,
            model.pipe.vae,
            folder,
            torch.float32,
            lambda stage, _: stages.append(stage),
            lambda: bool(stages),  # cancel as soon as the first stage began
        )
    assert stages == ["converting the UNet to OpenVINO (once per model)"]
    assert list((tmp_path / "openvino").iterdir()) == []


def test_auto_measures_once_and_remembers_the_faster_backend(make_engine, ov_cache, monkeypatch):
    measured: list[int] = []

    def fake_measure(*_args):
        measured.append(1)
        return 1.0, 2.0  # torch faster

    monkeypatch.setattr(choice, "measure_unet", fake_measure)
    engine, events = make_engine("auto")
    result = engine.generate(request(steps=2), WAIT)
    assert isinstance(result, Finished), result
    assert not events.of(result.job_id, Started)[0].device.endswith("OpenVINO")
    choices = json.loads((ov_cache / choice.CHOICES_FILE).read_text())
    assert [c["backend"] for c in choices.values()] == ["torch"]
    again, events = make_engine("auto")
    assert isinstance(again.generate(request(steps=2), WAIT), Finished)
    assert measured == [1]  # remembered
    key = next(iter(choices))
    choices[key]["backend"] = "openvino"
    (ov_cache / choice.CHOICES_FILE).write_text(json.dumps(choices))
    third, events = make_engine("auto")
    result = third.generate(request(steps=2), WAIT)
    assert events.of(result.job_id, Started)[0].device.endswith(", OpenVINO")


def test_auto_measures_again_at_a_new_size_instead_of_keeping_the_first_choice(
    make_engine, tmp_path, monkeypatch
):
    """A small first job picks torch; a larger job measures its own shape (OpenVINO)."""
    monkeypatch.setenv("DIFFUSIONDESK_CACHE", str(tmp_path))
    measured: list[tuple[int, int, int]] = []

    def fake_measure(_model, _ov_model, batch, height, width):
        measured.append((batch, height, width))
        return (1.0, 2.0) if width <= 32 else (2.0, 1.0)  # torch small, OpenVINO large

    monkeypatch.setattr(choice, "measure_unet", fake_measure)
    engine, events = make_engine("auto")
    small = engine.generate(request(steps=2, width=32, height=32), WAIT)
    large = engine.generate(request(steps=2, width=64, height=64), WAIT)
    small_again = engine.generate(request(steps=2, width=32, height=32), WAIT)
    devices_used = [events.of(r.job_id, Started)[0].device for r in (small, large, small_again)]
    assert [d.endswith(", OpenVINO") for d in devices_used] == [False, True, False]
    assert measured == [(2, 32, 32), (2, 64, 64)]  # each shape once
    choices = json.loads((tmp_path / choice.CHOICES_FILE).read_text())
    assert sorted((c["shape"], c["backend"]) for c in choices.values()) == [
        ("32x32x2", "torch"),
        ("64x64x2", "openvino"),
    ]


def test_a_deep_cache_job_runs_on_openvino_and_matches_torchs_deep_cache(
    make_engine, tiny_models, monkeypatch
):
    unet = tiny_models.get(TINY, lambda *_: None, lambda: False).pipe.unet
    deep_calls: list[int] = []
    handle = unet.mid_block.register_forward_pre_hook(
        lambda module, _args: deep_calls.append(1) if "forward" not in vars(module) else None
    )
    states: list[openvino_backend._DeepCacheState] = []
    original_init = openvino_backend._DeepCacheState.__init__

    def keep(self, interval):
        original_init(self, interval)
        states.append(self)

    monkeypatch.setattr(openvino_backend._DeepCacheState, "__init__", keep)
    job = request(steps=6, deep_cache=3, scheduler="Euler")
    try:
        reference = make_engine("torch")[0].generate(job, WAIT)
        torch_deep_calls = len(deep_calls)
        engine, events = make_engine("openvino")
        engine.generate(request(steps=1), WAIT)  # converts (the converter runs the UNet)
        deep_calls.clear()
        states.clear()
        result = engine.generate(job, WAIT)
    finally:
        handle.remove()
    assert isinstance(result, Finished), result
    assert events.of(result.job_id, Started)[0].device.endswith(", OpenVINO")
    assert not result.warnings
    assert torch_deep_calls == 2 and not deep_calls  # OpenVINO ran the deep blocks
    assert [(s.full_steps, s.cached_steps) for s in states] == [(2, 4)]  # steps 0 and 3
    assert np.abs(pixels(result)[0] - pixels(reference)[0]).max() <= 3


def test_the_shallow_graph_on_a_full_steps_features_gives_that_steps_output(tiny_models, ov_cache):
    """The deep blocks' output fed back at the same step reproduces the full UNet."""
    for source in (TINY, TINY_SDXL):
        model = tiny_models.get(source, lambda *_: None, lambda: False)
        ov_model = choice.Accelerator("openvino", cache_dir=ov_cache)._openvino(
            model, lambda *_: None, lambda: False
        )
        assert ov_model.runs_deep_cache
        unet = model.pipe.unet
        args, kwargs = choice.example_unet_inputs(unet, 2, 32, 32, torch.float32)
        with torch.no_grad():
            expected = unet(*args, **kwargs).sample
        inputs = {
            "sample": args[0].numpy(),
            "timestep": np.full(2, 500.0, dtype=np.float32),
            "encoder_hidden_states": args[2].numpy(),
        }
        if kwargs:
            inputs["text_embeds"] = kwargs["added_cond_kwargs"]["text_embeds"].numpy()
            inputs["time_ids"] = kwargs["added_cond_kwargs"]["time_ids"].numpy()
        full, features = ov_model.unet_part.run(inputs)
        shallow = ov_model.shallow_part({**inputs, "deep_features": features})
        np.testing.assert_allclose(full, expected.numpy(), atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(shallow, full, atol=1e-4, rtol=1e-4)


def test_a_guided_batch_runs_as_one_request_per_stream_with_the_same_outputs(tiny_models, ov_cache):
    """Two streams take half the batch each; every output (the deep features too) is the
    one-request graph's, and a batch that does not split evenly runs as one request."""
    model = tiny_models.get(TINY, lambda *_: None, lambda: False)
    folder = (
        choice.Accelerator("openvino", cache_dir=ov_cache)
        ._openvino(model, lambda *_: None, lambda: False)
        .folder
    )
    unet, vae = model.pipe.unet, model.pipe.vae
    threads = {"INFERENCE_NUM_THREADS": 2}
    one = openvino_backend.OpenVINOModel(unet, vae, folder, torch.float32, threads, streams=1)
    two = openvino_backend.OpenVINOModel(unet, vae, folder, torch.float32, threads, streams=2)
    args, _ = choice.example_unet_inputs(unet, 4, 32, 32, torch.float32)
    inputs = {
        "sample": args[0].numpy(),
        "timestep": np.array([500.0, 500.0, 20.0, 20.0], dtype=np.float32),
        "encoder_hidden_states": args[2].numpy(),
    }
    shapes = {k: v.shape for k, v in inputs.items()}
    assert two.unet_part.split(shapes) == 2 and one.unet_part.split(shapes) == 1
    for ours, theirs in zip(two.unet_part.run(inputs), one.unet_part.run(inputs), strict=True):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    odd = {k: v[:3] for k, v in inputs.items()}
    assert two.unet_part.split({k: v.shape for k, v in odd.items()}) == 1
    np.testing.assert_allclose(two.unet_part(odd), one.unet_part(odd), atol=1e-4, rtol=1e-4)
    # One thread has no second stream to give a half to.
    alone = openvino_backend.OpenVINOModel(
        unet, vae, folder, torch.float32, {"INFERENCE_NUM_THREADS": 1}, streams=2
    )
    assert alone.unet_part.split(shapes) == 1


def test_a_deep_cache_job_with_torch_compile_runs_plain_torch(tiny_models, ov_cache):
    model = tiny_models.get(TINY, lambda *_: None, lambda: False)
    accelerator = choice.Accelerator("torch", compile_unet=True, cache_dir=ov_cache)
    session = accelerator.prepare(model, request(deep_cache=3), 1, lambda *_: None, lambda: False)
    assert session.label == "" and session.warnings == [choice.DEEP_CACHE_ON_TORCH]


def test_calls_the_graph_cannot_serve_go_to_the_torch_unet(tiny_models, ov_cache):
    model = tiny_models.get(TINY, lambda *_: None, lambda: False)
    accelerator = choice.Accelerator("openvino", cache_dir=ov_cache)
    ov_model = accelerator._openvino(model, lambda *_: None, lambda: False)
    unet = model.pipe.unet
    args, kwargs = choice.example_unet_inputs(unet, 2, 32, 32, torch.float32)
    with torch.no_grad():
        expected = unet(*args, **kwargs).sample
        served = ov_model.unet_forward(*args, **kwargs).sample
        scaled = ov_model.unet_forward(*args, cross_attention_kwargs={"scale": 1.0}).sample
    torch.testing.assert_close(served, expected, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(scaled, expected)  # the torch UNet itself
    assert "forward" not in vars(unet)


def test_the_fingerprint_changes_with_the_weights(tiny_models):
    unet = copy.deepcopy(tiny_models.get(TINY, lambda *_: None, lambda: False).pipe.unet)
    before = openvino_backend.weights_fingerprint(unet)
    assert openvino_backend.weights_fingerprint(unet) == before
    weight = unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q.weight
    with torch.no_grad():
        weight += 0.01  # what fusing a LoRA does
    assert openvino_backend.weights_fingerprint(unet) != before


def test_a_conversion_failure_runs_torch_with_a_warning_and_is_remembered(
    make_engine, ov_cache, monkeypatch
):
    def broken(*_args, **_kwargs):
        raise RuntimeError("unsupported operation aten::frobnicate")

    monkeypatch.setattr(openvino_backend, "convert_to_cache", broken)
    monkeypatch.setattr(openvino_backend, "is_cached", lambda _folder: False)
    engine, events = make_engine("auto")
    result = engine.generate(request(model=TINY_INPAINT, steps=2, seed=9), WAIT)
    assert isinstance(result, Finished), result
    assert any("OpenVINO could not run this model (RuntimeError" in w for w in result.warnings)
    choices = json.loads((ov_cache / choice.CHOICES_FILE).read_text())
    failed = [c for k, c in choices.items() if k.startswith(TINY_INPAINT + "|")]
    assert failed and failed[0]["backend"] == "torch" and "frobnicate" in failed[0]["failed"]
    again = engine.generate(request(model=TINY_INPAINT, steps=2, seed=9), WAIT)
    assert isinstance(again, Finished) and not again.warnings  # remembered: no new try
