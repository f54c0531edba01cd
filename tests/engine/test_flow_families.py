"""SD 3 and FLUX.1 (dev, schnell, Fill) through the real engine, loaded from diffusers
folders the tests write: the same pixels as a plain diffusers call, previews from the
first step, cancel within a step, continue from a step, and clear refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from engine_helpers import WAIT, Recorder, box_mask
from engine_helpers import picture as random_picture
from PIL import Image
from tiny_flow_models import save_flow_model

from engine import compositing, families, metadata
from engine.api import (
    Cancelled,
    ErrorKind,
    Failed,
    Finished,
    GenerationRequest,
    Mode,
    ModelInfo,
    ResumeFrom,
    Started,
    Step,
)
from engine.models import ModelManager
from engine.picture_files import save_picture
from engine.worker import Engine

SIZE = 64
MODELS = {  # folder name: (family, variant)
    "sd3": ("sd3", ""),
    "flux-dev": ("flux1", "dev"),
    "flux-schnell": ("flux1", "schnell"),
    "flux-fill": ("flux1", "fill"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flow")
    return {
        name: save_flow_model(root / name, family, variant or "dev")
        for name, (family, variant) in MODELS.items()
    }


@pytest.fixture(scope="module")
def engine(folders: dict[str, Path]) -> Iterator[Engine]:
    eng = Engine(ModelManager(device="cpu", dtype="float32"))
    yield eng
    eng.shutdown(10)
    assert not eng._thread.is_alive()


@pytest.fixture
def recorder(engine: Engine) -> Iterator[Recorder]:
    rec = Recorder()
    engine.add_listener(rec)
    yield rec


def picture() -> Image.Image:
    return random_picture((SIZE, SIZE))


def mask() -> Image.Image:
    return box_mask((SIZE, SIZE), (16, 16, 48, 40))


def ask(folder: Path, mode: Mode = Mode.TXT2IMG, **changes: Any) -> GenerationRequest:
    extra: dict[str, Any] = {}
    if mode is not Mode.TXT2IMG:
        extra["init_image"] = picture()
    if mode is Mode.INPAINT:
        extra["mask"] = mask()
    base = GenerationRequest(
        prompt="a red circle",
        negative_prompt="a blue square",
        steps=3,
        guidance_scale=3.5,
        seed=7,
        width=SIZE,
        height=SIZE,
        scheduler="Euler",
        model=str(folder),
        strength=0.75,
        **extra,
    )
    return base.with_changes(**changes)


def plain_diffusers(folder: Path, family: str, variant: str, r: GenerationRequest) -> Image.Image:
    """The same job as one plain diffusers call, composited as the engine composites."""
    profile = families.profile(family)
    cls = profile.pipeline_class(Mode.INPAINT if variant == "fill" else r.mode, variant)
    pipe = cls.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    guidance = profile.variant(variant).guidance
    args: dict[str, Any] = {
        "prompt": r.prompt,
        "num_inference_steps": r.steps,
        "guidance_scale": 0.0 if guidance == "none" else r.guidance_scale,
        "generator": [torch.Generator("cpu").manual_seed(r.seed or 0)],
        "width": r.width,
        "height": r.height,
    }
    if guidance == "cfg":
        args["negative_prompt"] = r.negative_prompt
    setup = None
    if r.mask is not None or variant == "fill":
        base = r.init_image or Image.new("RGB", (r.width, r.height), (127, 127, 127))
        if r.mask is not None:
            setup = compositing.inpaint_setup(base, r.mask, r.mask_blur)
        else:
            setup = compositing.whole_picture_setup(base)
        args.update(image=setup.original, mask_image=setup.pipe_mask)
        args["strength"] = r.strength if r.init_image is not None else 1.0
    elif r.init_image is not None:
        args.update(image=r.init_image, strength=r.strength)
    with torch.inference_mode():
        image = pipe(**args).images[0]
    return compositing.final_composite(setup, image) if setup is not None else image


CASES = [
    ("sd3", Mode.TXT2IMG),
    ("sd3", Mode.IMG2IMG),
    ("sd3", Mode.INPAINT),
    ("flux-dev", Mode.TXT2IMG),
    ("flux-dev", Mode.IMG2IMG),
    ("flux-dev", Mode.INPAINT),
    ("flux-schnell", Mode.TXT2IMG),
    ("flux-schnell", Mode.INPAINT),
    ("flux-fill", Mode.INPAINT),
    ("flux-fill", Mode.TXT2IMG),
]


@pytest.mark.parametrize(("name", "mode"), CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_each_family_and_mode_gives_the_pixels_of_a_plain_diffusers_call(
    engine: Engine, recorder: Recorder, folders: dict[str, Path], name: str, mode: Mode
) -> None:
    family, variant = MODELS[name]
    r = ask(folders[name], mode)
    done = engine.generate(r, WAIT)
    assert isinstance(done, Finished), done
    started = recorder.of(done.job_id, Started)[0]
    assert (started.family, started.variant) == (family, variant)
    assert started.model_label == families.profile(family).variant(variant).label
    steps = recorder.of(done.job_id, Step)
    assert [s.step for s in steps] == list(range(1, len(steps) + 1)) and steps
    assert all(s.preview.dtype == np.uint8 and s.preview.shape[2] == 3 for s in steps)
    expected = plain_diffusers(folders[name], family, variant, r)
    np.testing.assert_array_equal(np.asarray(done.images[0]), np.asarray(expected))
    if mode is Mode.INPAINT:
        outside = np.asarray(mask()) == 0
        kept = np.asarray(done.images[0])[outside]
        np.testing.assert_array_equal(kept, np.asarray(picture())[outside])


@pytest.mark.parametrize("name", ["sd3", "flux-dev"])
def test_the_last_steps_x0_preview_is_the_final_latents_and_the_first_differs_from_x_t(
    engine: Engine, folders: dict[str, Path], name: str
) -> None:
    # A flow model's x0 estimate, x_t - sigma v, is where Euler's last step lands.
    done = engine.generate(ask(folders[name], steps=4), WAIT)
    assert isinstance(done, Finished), done
    last_x0 = done.step_previews[-1].astype(int)
    last_xt = done.noisy_step_previews[-1].astype(int)
    assert np.abs(last_x0 - last_xt).max() <= 1
    assert not np.array_equal(done.step_previews[0], done.noisy_step_previews[0])


def test_flux_previews_are_unpacked_to_the_pictures_aspect(
    engine: Engine, folders: dict[str, Path]
) -> None:
    done = engine.generate(ask(folders["flux-dev"], width=96, height=64), WAIT)
    assert isinstance(done, Finished), done
    assert done.step_previews[0].shape == (8, 12, 3)  # latents of 96 x 64 pixels


@pytest.mark.parametrize("name", ["sd3", "flux-dev"])
def test_cancel_takes_effect_within_the_first_step(
    engine: Engine, recorder: Recorder, folders: dict[str, Path], name: str
) -> None:
    engine.generate(ask(folders[name], steps=1), WAIT)  # loaded, so cancel meets sampling
    job: list[int] = []

    def cancel_on_start(event: object) -> None:
        if isinstance(event, Started) and event.job_id in job:
            engine.cancel(event.job_id)

    engine.add_listener(cancel_on_start)
    job.append(engine.submit(ask(folders[name], steps=20)))
    ended = engine.wait(job[0], WAIT)
    assert isinstance(ended, Cancelled), ended
    assert ended.step <= 1  # between transformer blocks, or after the first step


@pytest.mark.parametrize(
    ("name", "mode", "scheduler"),
    [
        ("flux-dev", Mode.TXT2IMG, "Euler"),
        ("flux-dev", Mode.INPAINT, "Euler"),
        ("sd3", Mode.TXT2IMG, "Euler"),
        ("sd3", Mode.TXT2IMG, "DPM++ 2M"),
    ],
)
def test_continuing_from_a_step_reproduces_the_run(
    engine: Engine,
    recorder: Recorder,
    folders: dict[str, Path],
    name: str,
    mode: Mode,
    scheduler: str,
) -> None:
    first = ask(folders[name], mode, steps=5, scheduler=scheduler, strength=1.0)
    source = engine.generate(first, WAIT)
    assert isinstance(source, Finished), source
    r = ask(folders[name], mode, resume=ResumeFrom(source.job_id, 2))
    resumed = engine.generate(r, WAIT)
    assert isinstance(resumed, Finished), resumed
    assert [s.step for s in recorder.of(resumed.job_id, Step)] == [3, 4, 5]
    assert resumed.request.scheduler == scheduler
    a, b = np.asarray(source.images[0]).astype(int), np.asarray(resumed.images[0]).astype(int)
    if mode is Mode.INPAINT:
        # diffusers' inpaint pipelines re-noise the kept area with the noise they drew, and
        # a resumed call hands them latents instead, so only the kept pixels must match.
        outside = np.asarray(mask()) == 0
        np.testing.assert_array_equal(a[outside], b[outside])
    else:
        assert np.abs(a - b).max() <= 2


@pytest.mark.parametrize(
    ("name", "sampler"), [("sd3", "UniPC"), ("sd3", "Euler a"), ("flux-dev", "UniPC")]
)
def test_every_offered_flow_sampler_runs(
    engine: Engine, folders: dict[str, Path], name: str, sampler: str
) -> None:
    done = engine.generate(ask(folders[name], scheduler=sampler, steps=4), WAIT)
    assert isinstance(done, Finished), done


@pytest.mark.parametrize(
    ("name", "changes", "words"),
    [
        ("flux-dev", {"scheduler": "DDIM"}, "The sampler DDIM does not fit FLUX.1 dev models"),
        ("sd3", {"width": 72}, "needs the width in multiples of 16, got 72 (try 64 or 80)"),
        (
            "flux-fill",
            {"inpaint_only_masked": True},
            "FLUX.1 Fill models cannot inpaint only the masked area",
        ),
    ],
)
def test_what_a_family_cannot_do_is_refused_in_one_sentence(
    engine: Engine, folders: dict[str, Path], name: str, changes: dict[str, Any], words: str
) -> None:
    mode = Mode.INPAINT if "inpaint_only_masked" in changes else Mode.TXT2IMG
    failed = engine.generate(ask(folders[name], mode, **changes), WAIT)
    assert isinstance(failed, Failed), failed
    assert failed.error == ErrorKind.BAD_INPUT
    assert words in failed.message
    assert isinstance(engine.generate(ask(folders[name], mode), WAIT), Finished)


@pytest.mark.parametrize(
    ("name", "suffix", "guidance"),
    [("flux-dev", ".png", "distilled"), ("flux-schnell", ".jpg", "none"), ("sd3", ".webp", "cfg")],
)
def test_family_variant_and_guidance_round_trip_through_the_pictures_metadata(
    engine: Engine, folders: dict[str, Path], tmp_path: Path, name: str, suffix: str, guidance: str
) -> None:
    family, variant = MODELS[name]
    done = engine.generate(ask(folders[name], guidance_scale=4.5), WAIT)
    assert isinstance(done, Finished), done
    assert done.model_info == ModelInfo(family, variant, guidance)
    path = tmp_path / f"picture{suffix}"
    save_picture(done.images[0], path, done.request, done.seeds[0], done.model_info)
    reading = metadata.read_parameters_checked(path)
    assert reading.model_info == done.model_info
    assert reading.request is not None and reading.request.guidance_scale == 4.5
    assert reading.request.scheduler == "Euler" and reading.request.seed == 7
    text = metadata.format_a1111(done.request, 7, done.model_info)
    assert f"Family: {family}" in text
    if guidance == "distilled":  # as Forge writes FLUX's guidance
        assert "CFG scale: 1.0" in text and "Distilled CFG Scale: 4.5" in text
        only_a1111 = metadata.parse_a1111_checked(text)
        assert only_a1111.request is not None and only_a1111.request.guidance_scale == 4.5
        assert only_a1111.model_info == done.model_info


def test_the_cli_runs_flux_schnell_with_its_own_defaults_and_notes_the_family(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine import cli

    out = tmp_path / "schnell.png"
    argv = ["generate", "--prompt", "a red circle", "--model", str(folders["flux-schnell"])]
    code = cli.main([*argv, "--width", "64", "--height", "64", "--seed", "3", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "running FLUX.1 schnell on" in capsys.readouterr().err
    reading = metadata.read_parameters_checked(out)
    assert reading.request is not None
    assert (reading.request.steps, reading.request.scheduler) == (4, "Euler")
    assert reading.model_info == ModelInfo("flux1", "schnell", "none")


def test_sd3s_guidance_cutoff_runs_and_where_it_cannot_the_job_says_so(
    engine: Engine, folders: dict[str, Path]
) -> None:
    cut = engine.generate(ask(folders["sd3"], steps=4, guidance_cutoff=0.5), WAIT)
    full = engine.generate(ask(folders["sd3"], steps=4), WAIT)
    assert isinstance(cut, Finished) and isinstance(full, Finished), (cut, full)
    assert not np.array_equal(np.asarray(cut.images[0]), np.asarray(full.images[0]))
    assert not cut.warnings
    img2img = engine.generate(ask(folders["sd3"], Mode.IMG2IMG, guidance_cutoff=0.5), WAIT)
    assert isinstance(img2img, Finished), img2img
    assert any("guided throughout" in w for w in img2img.warnings)
    flux = engine.generate(ask(folders["flux-dev"], guidance_cutoff=0.5), WAIT)
    assert isinstance(flux, Finished), flux
    assert any("FLUX.1 dev models' text to image" in w for w in flux.warnings)


def test_a_tiny_autoencoder_beside_a_flux_model_draws_its_previews_and_fast_decode(
    engine: Engine, folders: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    from diffusers import AutoencoderTiny

    folder = tmp_path / "flux-with-taef1"
    shutil.copytree(folders["flux-dev"], folder)
    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        latent_channels=16,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    ).save_pretrained(folder / "taesd")
    done = engine.generate(ask(folder, steps=3, fast_decode=True), WAIT)
    assert isinstance(done, Finished), done
    assert done.step_previews[0].shape == (SIZE, SIZE, 3)  # decoded, not the 8 x 8 latents
    assert not done.warnings  # the tiny autoencoder was there for the fast decode
