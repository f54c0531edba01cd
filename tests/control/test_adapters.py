"""T2I adapter units through the engine with tiny random adapters: the same pixels as
diffusers' adapter pipelines, weight, start/end, several units, beside a ControlNet, in
every mode, previews and cancel, and the files they come in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from adapter_helpers import (
    full_adapter,
    light_adapter,
    original_state,
    save_single_file,
    save_tiny_adapter,
    tiny_adapter,
)
from control_helpers import cancel_at_first_step, outline, pixels
from diffusers import (
    MultiAdapter,
    StableDiffusionAdapterPipeline,
    StableDiffusionXLAdapterPipeline,
    T2IAdapter,
)
from engine_helpers import TINY, TINY_SDXL, WAIT, TinyModels, box_mask, picture, request
from PIL import Image

from engine.api import (
    Cancelled,
    ControlUnit,
    ErrorKind,
    Failed,
    Finished,
    GenerationRequest,
    Mode,
    ModelFamily,
    ResumeFrom,
    Step,
)
from engine.control import adapter_keys
from engine.control.adapters import load_file_adapter
from engine.schedulers import make_scheduler
from engine.worker import Engine


def sketch() -> Image.Image:
    return outline("ellipse")


def unit(model, **changes) -> ControlUnit:
    return ControlUnit(model=str(model), image=sketch(), **changes)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different tiny adapters (diffusers folders) for the tiny SD 1.x and SDXL UNets."""
    root = tmp_path_factory.mktemp("adapters")
    return save_tiny_adapter(root / "ad-a", seed=1), save_tiny_adapter(root / "ad-b", seed=2)


def diffusers_call(models: TinyModels, source: str, adapter, r: GenerationRequest, **extra):
    """A plain diffusers adapter pipeline over the same components, seed and sampler."""
    pipe = models.get(source, lambda *_: None, lambda: False).pipe
    cls = (
        StableDiffusionXLAdapterPipeline if source == TINY_SDXL else StableDiffusionAdapterPipeline
    )
    plain = cls.from_pipe(pipe, adapter=adapter)
    plain.set_progress_bar_config(disable=True)
    plain.scheduler = make_scheduler(r.scheduler, pipe.scheduler.config)
    image = plain(
        r.prompt,
        num_inference_steps=r.steps,
        guidance_scale=r.guidance_scale,
        width=r.width,
        height=r.height,
        generator=[torch.Generator("cpu").manual_seed(r.seed)],
        **extra,
    ).images[0]
    return np.asarray(image, dtype=np.int16)


@contextmanager
def unet_residual_steps(models: TinyModels, source: str = TINY) -> Iterator[list[bool]]:
    """For each UNet call: did it get adapter residuals? (a forward hook sees the call's
    keyword arguments after every pre-hook, the engine's included)."""
    seen: list[bool] = []
    unet = models.get(source, lambda *_: None, lambda: False).pipe.unet

    def hook(module, args, kwargs, output):
        seen.append(kwargs.get("down_intrablock_additional_residuals") is not None)

    handle = unet.register_forward_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


# ----------------------------------------------------------------------------- the same pixels


@pytest.mark.parametrize("source", [TINY, TINY_SDXL], ids=["sd1", "sdxl"])
def test_an_adapter_unit_gives_the_same_pixels_as_diffusers_adapter_pipeline(
    engine, control_models, adapters, source
):
    r = request(model=source, steps=4, scheduler="Euler", controls=(unit(adapters[0], weight=0.8),))
    ours = pixels(engine.generate(r, WAIT))
    theirs = diffusers_call(
        control_models,
        source,
        T2IAdapter.from_pretrained(str(adapters[0])),
        r,
        image=sketch(),
        adapter_conditioning_scale=0.8,
    )
    np.testing.assert_array_equal(ours, theirs)
    plain = pixels(engine.generate(r.with_changes(controls=()), WAIT))
    assert np.abs(ours - plain).mean() > 1.0  # and the adapter did steer the picture


def test_two_units_give_the_same_pixels_as_diffusers_multi_adapter(
    engine, control_models, adapters
):
    units = (unit(adapters[0], weight=0.5), unit(adapters[1], weight=1.5))
    r = request(steps=3, scheduler="Euler", controls=units)
    ours = pixels(engine.generate(r, WAIT))
    multi = MultiAdapter([T2IAdapter.from_pretrained(str(a)) for a in adapters])
    theirs = diffusers_call(
        control_models,
        TINY,
        multi,
        r,
        image=[sketch(), sketch()],
        adapter_conditioning_scale=[0.5, 1.5],
    )
    np.testing.assert_array_equal(ours, theirs)


def test_sdxl_end_is_the_adapter_pipelines_conditioning_factor(engine, control_models, adapters):
    r = request(model=TINY_SDXL, steps=4, scheduler="Euler", controls=(unit(adapters[0], end=0.5),))
    with unet_residual_steps(control_models, TINY_SDXL) as seen:
        ours = pixels(engine.generate(r, WAIT))
    assert seen == [True, True, False, False]
    theirs = diffusers_call(
        control_models,
        TINY_SDXL,
        T2IAdapter.from_pretrained(str(adapters[0])),
        r,
        image=sketch(),
        adapter_conditioning_factor=0.5,
    )
    np.testing.assert_array_equal(ours, theirs)


# ----------------------------------------------------------------------------- weight and steps


def test_zero_weight_gives_the_same_pixels_as_no_adapter(engine, adapters):
    plain = pixels(engine.generate(request(steps=3), WAIT))
    zero = pixels(
        engine.generate(request(steps=3, controls=(unit(adapters[0], weight=0.0),)), WAIT)
    )
    np.testing.assert_array_equal(zero, plain)


def test_start_and_end_choose_the_steps_each_unit_acts_on(engine, control_models, adapters):
    late = (unit(adapters[0], start=0.5, end=1.0),)
    with unet_residual_steps(control_models) as seen:
        assert isinstance(engine.generate(request(steps=4, controls=late), WAIT), Finished)
    assert seen == [False, False, True, True]
    both = (unit(adapters[0], start=0.5, end=1.0), unit(adapters[1], start=0.0, end=0.25))
    with unet_residual_steps(control_models) as seen:
        assert isinstance(engine.generate(request(steps=4, controls=both), WAIT), Finished)
    assert seen == [True, False, True, True]


def test_every_step_streams_a_preview(engine, recorder, adapters):
    result = engine.generate(request(steps=5, controls=(unit(adapters[0]),)), WAIT)
    assert isinstance(result, Finished), result
    steps = recorder.of(result.job_id, Step)
    assert [s.step for s in steps] == [1, 2, 3, 4, 5]
    assert all(s.preview.ndim == 3 and s.preview.shape[2] == 3 for s in steps)
    assert len(result.step_previews) == 5


def test_cancel_stops_an_adapter_job_within_a_step(engine, adapters):
    result = cancel_at_first_step(engine, request(steps=30, controls=(unit(adapters[0]),)))
    assert isinstance(result, Cancelled), result
    assert result.step <= 2
    assert isinstance(
        engine.generate(request(steps=1, controls=(unit(adapters[0]),)), WAIT), Finished
    )


# ----------------------------------------------------------------------------- modes and mixes


@pytest.mark.parametrize("mode", [Mode.IMG2IMG, Mode.INPAINT])
def test_an_adapter_steers_image_to_image_and_inpaint(engine, adapters, mode):
    changes = {"init_image": picture(), "strength": 0.9, "steps": 4}
    mask = box_mask(box=(4, 4, 28, 28))
    if mode is Mode.INPAINT:
        changes["mask"] = mask
    plain = pixels(engine.generate(request(**changes), WAIT))
    steered = pixels(engine.generate(request(**changes, controls=(unit(adapters[0]),)), WAIT))
    inside = np.asarray(mask) > 127
    assert np.abs(steered - plain)[inside].mean() > 0.5
    if mode is Mode.INPAINT:
        np.testing.assert_array_equal(steered[~inside], np.asarray(picture(), np.int16)[~inside])


def test_a_controlnet_and_an_adapter_run_together(engine, control_models, controlnets, adapters):
    net, adapter = unit(controlnets[0]), unit(adapters[0])
    net_only = pixels(engine.generate(request(controls=(net,)), WAIT))
    adapter_only = pixels(engine.generate(request(controls=(adapter,)), WAIT))
    with unet_residual_steps(control_models) as seen:
        both = pixels(engine.generate(request(controls=(net, adapter)), WAIT))
    assert seen == [True, True, True]
    assert np.abs(both - net_only).mean() > 0.5 and np.abs(both - adapter_only).mean() > 0.5
    silent = unit(adapters[0], weight=0.0)
    np.testing.assert_array_equal(
        pixels(engine.generate(request(controls=(net, silent)), WAIT)), net_only
    )


def test_an_adapter_that_does_not_fit_the_unet_is_refused_in_words(engine, tmp_path):
    wrong = save_single_file(
        full_adapter(in_channels=3), tmp_path / "t2iadapter_sd_layout.safetensors"
    )
    result = engine.generate(request(controls=(unit(wrong),)), WAIT)
    assert isinstance(result, Failed) and result.error is ErrorKind.BAD_INPUT
    assert "does not fit" in result.message and "made for SD 1.x and 2.x" in result.message
    assert isinstance(engine.generate(request(steps=1), WAIT), Finished)


@pytest.mark.parametrize("family", [ModelFamily.SD3, ModelFamily.FLUX1])
def test_an_adapter_for_a_transformer_family_is_refused_in_words(adapters, family):
    from engine.api import EngineError
    from engine.plan import _pipeline_class

    model = SimpleNamespace(family=family, variant="")
    with pytest.raises(EngineError) as caught:
        _pipeline_class(request(controls=(unit(adapters[0]),)), model, Mode.TXT2IMG)
    assert "T2I adapters run with SD 1.x, SD 2.x and SDXL models" in str(caught.value)


# ----------------------------------------------------------------------------- files


def test_an_adapter_is_told_from_a_controlnet_by_its_keys(adapters, controlnets, tmp_path):
    adapter = T2IAdapter.from_pretrained(str(adapters[0]))
    files = {
        "diffusers": save_single_file(adapter, tmp_path / "a.safetensors"),
        "original": save_single_file(full_adapter(), tmp_path / "b.safetensors", original=True),
        "light": save_single_file(light_adapter(), tmp_path / "c.safetensors", original=True),
    }
    assert all(adapter_keys.is_adapter_path(p) for p in files.values())
    assert adapter_keys.is_adapter_path(adapters[0])
    assert not adapter_keys.is_adapter_path(controlnets[0])
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    net = ControlNetModel.from_pretrained(str(controlnets[0]))
    net_file = tmp_path / "control.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(net_file))
    assert not adapter_keys.is_adapter_path(net_file)


@pytest.mark.parametrize(
    "build, kind",
    [
        (full_adapter, "full_adapter"),
        (light_adapter, "light_adapter"),
        (tiny_adapter, "full_adapter_xl"),
    ],
)
def test_an_original_tencentarc_file_loads_as_the_same_adapter(tmp_path, build, kind):
    source = build()
    path = save_single_file(source, tmp_path / "t2iadapter_x_sd14v1.safetensors", original=True)
    loaded = load_file_adapter(path, torch.device("cpu"), torch.float32, allow_pickle=False)
    assert loaded.config.adapter_type == kind
    theirs, ours = source.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    x = torch.rand(1, source.config.in_channels, 64, 64)
    with torch.no_grad():
        for a, b in zip(loaded(x), source(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_single_files_give_the_same_pixels_as_the_folder(engine, adapters, tmp_path):
    adapter = T2IAdapter.from_pretrained(str(adapters[0]))
    from_folder = pixels(engine.generate(request(controls=(unit(adapters[0]),)), WAIT))
    for path, original in (
        (tmp_path / "t2i-adapter_tiny_sketch.safetensors", False),
        (tmp_path / "t2iadapter_tiny_sketch_sd14v1.safetensors", True),
    ):
        save_single_file(adapter, path, original=original)
        from_file = pixels(engine.generate(request(controls=(unit(path),)), WAIT))
        np.testing.assert_array_equal(from_file, from_folder)


def test_a_pth_adapter_needs_the_pickle_consent(control_models, adapters, tmp_path):
    pth = save_single_file(
        T2IAdapter.from_pretrained(str(adapters[0])),
        tmp_path / "t2iadapter_tiny.pth",
        original=True,
    )
    refusing = Engine(control_models)
    try:
        result = refusing.generate(request(controls=(unit(pth),)), WAIT)
        assert isinstance(result, Failed) and result.error is ErrorKind.MODEL
        assert "pickle" in result.message and "--allow-pickle" in result.message
    finally:
        refusing.shutdown(10)
    consenting = Engine(control_models, allow_pickle=True)
    try:
        with_pth = pixels(consenting.generate(request(controls=(unit(pth),)), WAIT))
        with_folder = pixels(consenting.generate(request(controls=(unit(adapters[0]),)), WAIT))
        np.testing.assert_array_equal(with_pth, with_folder)
    finally:
        consenting.shutdown(10)


def test_an_early_adapter_diffusers_cannot_run_is_named(engine, tmp_path):
    state = original_state(full_adapter())
    state["body.0.skep.weight"] = torch.zeros(8, 8, 3, 3)
    from safetensors.torch import save_file

    path = tmp_path / "t2iadapter_old.safetensors"
    save_file(state, str(path))
    result = engine.generate(request(controls=(unit(path),)), WAIT)
    assert isinstance(result, Failed) and result.error is ErrorKind.MODEL
    assert "sk=False" in result.message and "t2iadapter_old.safetensors" in result.message


def test_a_continued_run_keeps_each_adapter_on_its_own_steps(engine, control_models, adapters):
    units = (unit(adapters[0], start=0.5, end=1.0), unit(adapters[1], end=0.25))
    source = engine.generate(request(steps=4, scheduler="Euler", controls=units), WAIT)
    assert isinstance(source, Finished), source
    with unet_residual_steps(control_models) as seen:
        resumed = engine.generate(
            request(scheduler="Euler", controls=units, resume=ResumeFrom(source.job_id, 1)), WAIT
        )
    assert seen == [False, True, True]  # steps 2 to 4 of [True, False, True, True]
    np.testing.assert_array_equal(pixels(resumed), pixels(source))


def test_the_cli_takes_an_adapter_pth_and_a_controlnet_in_one_job(
    tmp_path, capsys, control_models, controlnets, adapters
):
    from engine import cli, metadata

    image, out = tmp_path / "sketch.png", tmp_path / "out.png"
    sketch().save(image)
    pth = save_single_file(
        T2IAdapter.from_pretrained(str(adapters[0])),
        tmp_path / "t2iadapter_sketch.pth",
        original=True,
    )
    args = ["generate", "--prompt", "a red circle", "--model", "tiny", "--steps", "2",
            "--width", "32", "--height", "32", "--output", str(out),
            "--control", f"{pth}:{image}:0.7:0:0.5",
            "--control", f"{controlnets[0]}:{image}"]  # fmt: skip
    assert cli.main(args, models=control_models) == 1
    assert "--allow-pickle" in capsys.readouterr().err
    assert cli.main([*args, "--allow-pickle"], models=control_models) == 0
    text = metadata.read_texts(out)["parameters"]
    assert "Model: t2iadapter_sketch, Weight: 0.7" in text and "Guidance End: 0.5" in text
    assert "Model: cn-a, Weight: 1.0" in text


def test_a_size_off_the_adapters_patch_grid_is_refused_in_words(engine, adapters):
    result = engine.generate(request(width=40, height=32, controls=(unit(adapters[0]),)), WAIT)
    assert isinstance(result, Failed) and result.error is ErrorKind.BAD_INPUT
    assert "multiples of 16, got 40x32 (try 32x32)" in result.message


@pytest.mark.parametrize(
    "folder, millions",
    # Published sizes: the T2I-Adapter paper's 77M, TencentARC's SDXL adapters' 79M, and
    # the colour adapter's 74.8 MB float32 file.
    [("sd15", 77.37), ("sd15-light", 18.69), ("sdxl", 79.03)],
)
def test_the_shipped_configs_are_the_published_architectures(folder, millions):
    import json

    from engine.control.adapters import config_for
    from engine.resources import model_configs_dir

    shipped = json.loads((model_configs_dir() / "t2i_adapter" / folder / "config.json").read_text())
    with torch.device("meta"):
        published = T2IAdapter.from_config(shipped)
    assert round(sum(p.numel() for p in published.parameters()) / 1e6, 2) == millions
    # A file of that architecture in TencentARC's layout is matched to this config.
    original = original_state(published) if folder != "sdxl" else published.state_dict()
    names = adapter_keys.to_diffusers(list(original))
    assert config_for({names[k]: tuple(v.shape) for k, v in original.items()}) == shipped


@pytest.mark.parametrize("written_as", ["a1111", "record"])
def test_adapter_units_are_written_and_read_back_into_the_same_picture(
    engine, adapters, controlnets, tmp_path, written_as
):
    """A1111 text names an adapter as sd-webui-controlnet does (a ControlNet unit, by file
    name, found again in the ControlNet folder); our record keeps its path."""
    import json
    import shutil

    from engine import metadata

    root = tmp_path / "models"
    (root / "ControlNet").mkdir(parents=True)
    adapter = T2IAdapter.from_pretrained(str(adapters[0]))
    save_single_file(adapter, root / "ControlNet" / "t2iadapter_tiny_sketch.safetensors")
    shutil.copytree(controlnets[0], root / "ControlNet" / "cn-a")
    units = (
        unit("t2iadapter_tiny_sketch", weight=0.6, start=0.25, end=0.75),
        unit(root / "ControlNet" / "cn-a", weight=0.4, preprocessor="canny"),
    )
    first = engine.generate(request(steps=4, controls=units, model_folders=(str(root),)), WAIT)
    assert isinstance(first, Finished), first
    if written_as == "a1111":
        back = metadata.parse_a1111_checked(metadata.format_a1111(first.request, first.seeds[0]))
    else:
        record = metadata.to_record(first.request, first.seeds[0])
        back = metadata.from_record_checked(json.dumps(record))
    assert back.request is not None and back.left_out == ()
    assert [(u.weight, u.start, u.end) for u in back.units] == [(0.6, 0.25, 0.75), (0.4, 0.0, 1.0)]
    restored = tuple(
        ControlUnit(u.model, sketch(), u.weight, u.start, u.end, u.preprocessor) for u in back.units
    )
    again = engine.generate(
        # The model is named by its file in A1111 text; these tests serve it by name.
        back.request.with_changes(model=TINY, controls=restored, model_folders=(str(root),)),
        WAIT,
    )
    np.testing.assert_array_equal(pixels(again), pixels(first))


def test_the_model_library_lists_adapter_files_as_control_models(tmp_path):
    from engine.checkpoint_keys import CONTROLNET, classify
    from engine.library import _split_header, read_safetensors_header

    files = {
        "sd1": save_single_file(full_adapter(), tmp_path / "sd.safetensors", original=True),
        "sdxl": save_single_file(tiny_adapter(), tmp_path / "xl.safetensors"),
    }
    for family, path in files.items():
        keys, shapes, metadata = _split_header(read_safetensors_header(path))
        assert classify(keys, shapes, metadata) == (CONTROLNET, family)
