"""Transformer-only files with separate text encoders and VAE, as ComfyUI and model sites
share them: SD3 and FLUX.1 loaded offline from files written in the real key layouts, the
same pixels as the diffusers pipeline they came from; GGUF transformers of every family
run quantized, through the engine too; fp8 transformers run; a missing file is named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import Recorder, never

from engine import memory_policy
from engine.api import EngineError, ErrorKind, ModelFamily
from engine.file_family import file_family
from tests.flow_checkpoint import DIFFUSION_PREFIX
from tests.single_file_cases import CASES, cpu_manager, load_error
from tests.tiny_flow_files import write_flow_files, write_gguf

pytestmark = pytest.mark.usefixtures("one_torch_thread", "no_network")

SETTINGS = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}


def _image(pipe: object, **extra: object) -> np.ndarray:
    generator = torch.Generator().manual_seed(7)
    return pipe("a red circle", generator=generator, **SETTINGS, **extra).images[0]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("family", "prefix"), [("flux1", ""), ("sd3", DIFFUSION_PREFIX)], ids=["flux1", "sd3"]
)
def test_a_transformer_file_loads_offline_with_its_separate_encoders_and_vae(
    tmp_path: Path, family: str, prefix: str
) -> None:
    files, reference = write_flow_files(tmp_path, family, prefix=prefix)
    progress = Recorder()
    model = cpu_manager(files.config_root).get(str(files.transformer), progress, never)

    assert model.family == ModelFamily(family)
    assert type(model.pipe) is type(reference)
    stages = [s for s, _ in progress.events]
    assert stages[0] == f"reading {files.transformer.name}"
    assert any(s.startswith("memory: all on the device (model ") for s in stages)
    assert {"loading transformer", "loading vae", "loading text_encoder"} <= set(stages)
    assert stages[-1] == "ready"
    assert model.notes == ()  # all on the device: nothing to add to the status bar
    np.testing.assert_allclose(_image(model.pipe), _image(reference), atol=1e-5)


def test_flux_variants_are_told_from_the_transformers_keys(tmp_path: Path) -> None:
    files, _ = write_flow_files(tmp_path / "s", "flux1", variant="flux1-schnell")
    model = cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)
    assert (model.family, model.variant) == (ModelFamily.FLUX1, "schnell")
    assert model.label == "FLUX.1 schnell"

    files, _ = write_flow_files(tmp_path / "f", "flux1", variant="flux1-fill")
    model = cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)
    assert (model.variant, type(model.pipe).__name__) == ("fill", "FluxFillPipeline")
    assert model.is_inpaint_unet  # Fill only inpaints


def test_a_missing_text_encoder_is_named_with_where_it_was_looked_for(tmp_path: Path) -> None:
    files, reference = write_flow_files(tmp_path, "flux1")
    elsewhere = tmp_path / "downloads" / "t5xxl_fp16.safetensors"
    elsewhere.parent.mkdir()
    shutil.move(files.text_encoders["t5xxl"], elsewhere)
    manager = cpu_manager(files.config_root)

    message = load_error(manager, files.transformer)
    assert "FLUX.1 needs the T5-XXL text encoder (t5xxl_fp16.safetensors)" in message
    assert files.transformer.name in message and str(files.models / "text_encoders") in message

    # Named by hand (the CLI's --text-encoder, the window's file dialog), it loads.
    model = manager.get(str(files.transformer), Recorder(), never, files=[str(elsewhere)])
    np.testing.assert_allclose(_image(model.pipe), _image(reference), atol=1e-5)


def test_encoders_and_vae_in_diffusiondesks_models_folder_are_found(tmp_path: Path) -> None:
    files, _ = write_flow_files(tmp_path, "sd3")
    own = tmp_path / "DiffusionDesk" / "models"
    shutil.move(files.models / "text_encoders", own / "text_encoders")
    shutil.move(files.models / "vae", own / "vae")
    model = cpu_manager(files.config_root).get(
        str(files.transformer), Recorder(), never, roots=[str(own)]
    )
    assert model.pipe.text_encoder_3 is not None  # T5 found in the other tree
    assert model.pipe.vae.config.latent_channels == 16


def test_an_encoder_of_the_wrong_width_is_not_taken_for_the_right_one(tmp_path: Path) -> None:
    files, _ = write_flow_files(tmp_path, "flux1")
    clip = files.text_encoders["clip_l"]
    # A CLIP of another width (an SD 1.x text encoder, say) in place of CLIP-L.
    from safetensors.torch import load_file, save_file

    wide = {
        k: torch.zeros(*[2 * n if n == 16 else n for n in v.shape])
        for k, v in load_file(clip).items()
    }
    save_file(wide, clip)
    with pytest.raises(
        EngineError, match=r"CLIP-L text encoder.*do not fit this model: clip_l_tiny"
    ):
        cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)


def test_an_fp8_transformer_stays_fp8_and_runs_in_the_compute_precision(tmp_path: Path) -> None:
    files, reference = write_flow_files(tmp_path, "sd3", dtype=torch.float8_e4m3fn)
    model = cpu_manager(files.config_root, "bfloat16").get(
        str(files.transformer), Recorder(), never
    )

    assert model.notes[0] == "fp8 (e4m3fn)"
    transformer = model.pipe.transformer
    assert transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    assert transformer.transformer_blocks[0].ff.net[2].weight.dtype == torch.float8_e4m3fn
    # diffusers skips norms and position embeddings: those run at full precision.
    assert transformer.transformer_blocks[0].norm1.linear.weight.dtype == torch.bfloat16
    assert transformer.pos_embed.proj.weight.dtype == torch.bfloat16
    image = _image(model.pipe)
    assert np.isfinite(image).all()
    assert np.abs(image - _image(reference)).mean() < 0.05


def test_a_model_too_big_for_memory_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, _ = write_flow_files(tmp_path, "flux1")
    monkeypatch.setattr(memory_policy, "system_free", lambda: 1000)
    progress = Recorder()
    with pytest.raises(EngineError) as caught:
        cpu_manager(files.config_root).get(str(files.transformer), progress, never)
    assert caught.value.kind == ErrorKind.OUT_OF_MEMORY
    assert "FLUX.1 dev (tiny-flux1-dev.safetensors) needs about" in caught.value.message
    assert not any(s.startswith("loading") for s, _ in progress.events)


def test_the_cli_passes_text_encoders_and_the_vae_as_the_models_files(tmp_path: Path) -> None:
    from engine import cli

    vae = tmp_path / "ae.safetensors"
    vae.write_bytes(b"x")
    args = cli._parser().parse_args(
        [
            "generate",
            "--prompt",
            "a cat",
            "--model",
            "flux.gguf",
            "--text-encoder",
            "/m/clip_l.safetensors",
            "--text-encoder",
            "/m/t5xxl_fp8.safetensors",
            "--vae",
            str(vae),
            "--output",
            str(tmp_path / "out.png"),
        ]
    )
    request = cli.build_request(args)
    assert request.model_files == ("/m/clip_l.safetensors", "/m/t5xxl_fp8.safetensors", str(vae))


def test_the_cli_names_a_missing_text_encoder_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine import cli

    files, _ = write_flow_files(tmp_path, "flux1")
    shutil.rmtree(files.models / "text_encoders")
    code = cli.main(
        [
            "generate",
            "--prompt",
            "a cat",
            "--model",
            str(files.transformer),
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "out.png"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert "FLUX.1 needs the CLIP-L text encoder (clip_l.safetensors)" in err
    assert not (tmp_path / "out.png").exists()


def test_an_all_in_one_sd3_file_brings_its_own_encoders_and_vae(tmp_path: Path) -> None:
    """SD3's "incl_clips_t5xxl" files: the text encoders and VAE under their prefixes."""
    from safetensors.torch import load_file, save_file

    files, reference = write_flow_files(tmp_path, "sd3", prefix=DIFFUSION_PREFIX)
    combined = load_file(files.transformer)
    for name, path in files.text_encoders.items():
        combined |= {f"text_encoders.{name}.transformer.{k}": v for k, v in load_file(path).items()}
    combined |= {f"first_stage_model.{k}": v for k, v in load_file(files.vae).items()}
    single = tmp_path / "alone" / "sd3_medium_incl_clips_t5xxl.safetensors"
    single.parent.mkdir()
    save_file(combined, single)
    shutil.rmtree(files.models)  # nothing beside it

    model = cpu_manager(files.config_root).get(str(single), Recorder(), never)
    np.testing.assert_allclose(_image(model.pipe), _image(reference), atol=1e-5)


def test_cancel_stops_between_the_files(tmp_path: Path) -> None:
    from engine.api import JobCancelled

    files, _ = write_flow_files(tmp_path, "flux1")
    progress = Recorder()

    def after_clip() -> bool:
        return any(stage == "loading text_encoder" for stage, _ in progress.events)

    manager = cpu_manager(files.config_root)
    with pytest.raises(JobCancelled):
        manager.get(str(files.transformer), progress, after_clip)
    stages = [s for s, _ in progress.events]
    assert "loading transformer" not in stages
    assert manager.current is None


def test_a_zimage_file_loads_with_its_qwen3_encoder_and_the_flux_vae(tmp_path: Path) -> None:
    from tests.tiny_flow_files import write_zimage_files

    files, reference = write_zimage_files(tmp_path)
    model = cpu_manager(files.config_root).get(str(files.transformer), Recorder(), never)
    assert (model.family, model.variant) == (ModelFamily.ZIMAGE, "turbo")
    kwargs = {"guidance_scale": 0.0}
    np.testing.assert_allclose(_image(model.pipe, **kwargs), _image(reference, **kwargs), atol=1e-5)


# case -> the GGUF architecture city96's converter writes, the writer's options (rows of
# 256 for SANA, which Q8_0 blocks need), how far Q8_0 may move the picture
GGUF_CASES = {
    "flux1-dev": ("flux", {}, 0.02),
    "qwen_image": ("qwen_image", {}, 0.03),
    "sana": ("sana", {"bench": True}, 0.02),
    "flux2-klein": ("flux", {}, 0.02),
}


def _gguf_files(tmp_path: Path, name: str) -> tuple[object, object, Path]:
    arch, options, _ = GGUF_CASES[name]
    files, reference = CASES[name].write(tmp_path, **options)
    gguf_file = write_gguf(files.transformer, files.transformer.with_suffix(".gguf"), arch)
    files.transformer.unlink()
    return files, reference, gguf_file


@pytest.mark.parametrize("name", list(GGUF_CASES))
def test_a_gguf_transformer_runs_quantized_and_says_so(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    files, reference, gguf_file = _gguf_files(tmp_path, name)
    assert file_family(gguf_file) == (case.family, case.variant)  # before loading
    model = cpu_manager(files.config_root, "bfloat16").get(str(gguf_file), Recorder(), never)

    assert model.notes[0] == "GGUF Q8_0"
    linears = [m for m in model.pipe.transformer.modules() if type(m).__name__ == "GGUFLinear"]
    assert linears and all(m.weight.dtype == torch.uint8 for m in linears)
    image = case.picture(model.pipe)
    assert np.isfinite(image).all()
    assert np.abs(image - case.picture(reference)).mean() < GGUF_CASES[name][2]


@pytest.mark.parametrize(
    ("name", "gguf"), [("flux1-dev", True), ("qwen_image", True), ("sana-sprint", False)]
)
def test_a_single_file_runs_through_the_engine_with_a_preview_every_step(
    tmp_path: Path, name: str, gguf: bool
) -> None:
    from engine_helpers import WAIT, request
    from engine_helpers import Recorder as Events

    from engine import families
    from engine.api import Finished, Started, Step
    from engine.worker import Engine

    case = CASES[name]
    if gguf:
        files, _, model_file = _gguf_files(tmp_path, name)
    else:
        files, _ = case.write(tmp_path)
        model_file = files.transformer
    defaults = families.profile(case.family).variant(case.variant)
    steps = min(defaults.steps, 3)
    engine = Engine(cpu_manager(files.config_root))
    events = Events()
    engine.add_listener(events)
    try:
        job = engine.submit(
            request(
                model=str(model_file),
                negative_prompt="blurry",
                steps=steps,
                guidance_scale=defaults.guidance_scale,
                seed=7,
                width=64,
                height=64,
                scheduler=defaults.scheduler.value,
            )
        )
        ended = engine.wait(job, WAIT)
    finally:
        engine.shutdown(10)
    assert isinstance(ended, Finished), ended
    (started,) = events.of(job, Started)
    assert ("GGUF Q8_0" in started.device) is gguf  # what the status bar shows
    assert (started.family, started.variant) == (case.family.value, case.variant)
    assert [s.step for s in events.of(job, Step)] == list(range(1, steps + 1))
    assert ended.images[0].size == (64, 64) and np.asarray(ended.images[0]).std() > 0


def test_an_encoder_of_another_vocabulary_is_refused_in_a_sentence(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    files, _ = CASES["flux1-dev"].write(tmp_path)
    t5 = files.text_encoders["t5xxl"]
    state = load_file(t5)
    rows, width = state["shared.weight"].shape
    state["shared.weight"] = torch.zeros(rows * 2, width)  # twice the vocabulary
    save_file(state, t5)
    message = load_error(cpu_manager(files.config_root), files.transformer)
    assert message.startswith(f"{t5.name} does not fit this model's text encoder 2: size mismatch")
