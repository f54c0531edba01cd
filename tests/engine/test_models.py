"""ModelManager: model sources, reuse and release, and the errors people see."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline
from tiny_models import save_tiny_model, tiny_sdxl_pipeline

from engine.api import EngineError, ErrorKind, JobCancelled
from engine.models import LoadedModel, ModelManager


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> object:
    """Tiny models gain nothing from threads; on a loaded machine, spinning OpenMP
    threads make them a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []

    def __call__(self, stage: str, fraction: float) -> None:
        self.events.append((stage, fraction))


def never() -> bool:
    return False


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def tiny_inpaint_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-inpaint", inpaint_unet=True)


def test_device_description_known_before_any_load() -> None:
    manager = ModelManager(device="cpu", dtype="float32")
    assert manager.device_description == "cpu (float32)"
    assert manager.current is None


def test_loads_a_diffusers_folder_with_progress(tiny_folder: Path) -> None:
    manager = ModelManager(device="cpu")
    progress = Recorder()
    model = manager.get(str(tiny_folder), progress, never)
    assert isinstance(model, LoadedModel)
    assert isinstance(model.pipe, StableDiffusionPipeline)
    assert model.family == "sd1"
    assert model.source == str(tiny_folder)
    assert model.is_inpaint_unet is False
    assert model.latent_rgb is None and model.tiny_vae is None
    # "auto": bfloat16 + channels_last on a CPU with bfloat16 units, float32 elsewhere.
    policy = manager.policy
    assert model.device == torch.device("cpu") and model.dtype == policy.dtype
    assert model.pipe.unet.dtype == policy.dtype == model.pipe.vae.dtype
    weight = model.pipe.unet.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) == policy.channels_last
    assert progress.events[-1] == ("ready", 1.0)
    fractions = [f for _, f in progress.events]
    assert fractions == sorted(fractions)
    # The pipeline works.
    out = model.pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="np")
    assert out.images.shape == (1, 32, 32, 3)


def test_inpaint_unet_is_flagged(tiny_inpaint_folder: Path) -> None:
    model = ModelManager(device="cpu").get(str(tiny_inpaint_folder), Recorder(), never)
    assert model.is_inpaint_unet is True


def test_model_is_reused_and_switching_releases_the_old_one(
    tiny_folder: Path, tiny_inpaint_folder: Path
) -> None:
    manager = ModelManager(device="cpu")
    first = manager.get(str(tiny_folder), Recorder(), never)
    progress = Recorder()
    assert manager.get(str(tiny_folder), progress, never) is first
    assert progress.events == []  # reuse does not reload
    pipe_ref = weakref.ref(first.pipe)
    unet_ref = weakref.ref(first.pipe.unet)
    del first
    second = manager.get(str(tiny_inpaint_folder), Recorder(), never)
    gc.collect()
    assert pipe_ref() is None and unet_ref() is None
    assert second.is_inpaint_unet
    manager.release()
    assert manager.current is None


def test_release_frees_the_pipeline(tiny_folder: Path) -> None:
    manager = ModelManager(device="cpu")
    ref = weakref.ref(manager.get(str(tiny_folder), Recorder(), never).pipe)
    manager.release()
    gc.collect()
    assert ref() is None


def test_latent_rgb_and_tiny_vae_from_the_folder(tmp_path: Path) -> None:
    from diffusers import AutoencoderTiny

    folder = save_tiny_model(tmp_path / "m")
    factors = [[0.1, 0.2, 0.3], [0.0, 0.1, 0.0], [0.2, 0.0, 0.1], [0.0, 0.0, 0.3]]
    (folder / "latent_rgb.json").write_text(json.dumps({"factors": factors, "bias": [0, 0, 1]}))
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(folder / "taesd")
    model = ModelManager(device="cpu").get(str(folder), Recorder(), never)
    assert model.latent_rgb == (factors, [0.0, 0.0, 1.0])
    assert isinstance(model.tiny_vae, AutoencoderTiny)


def test_cancel_between_loading_stages(tiny_folder: Path) -> None:
    calls = {"n": 0}

    def cancel_on_third() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    manager = ModelManager(device="cpu")
    with pytest.raises(JobCancelled):
        manager.get(str(tiny_folder), Recorder(), cancel_on_third)
    assert manager.current is None


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get(str(tmp_path / "nope.safetensors"), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "does not exist" in err.value.message


def test_folder_without_model_index(tmp_path: Path) -> None:
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get(str(tmp_path), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "model_index.json" in err.value.message


def test_folder_with_only_pickle_weights_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    pipe = StableDiffusionPipeline.from_pretrained(save_tiny_model(tmp_path / "src"))
    pipe.save_pretrained(folder, safe_serialization=False)
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get(str(folder), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "arbitrary code" in err.value.message
    model = ModelManager(device="cpu", allow_pickle=True).get(str(folder), Recorder(), never)
    assert model.family == "sd1"


def test_starter_resolves_to_the_bundled_folder(
    tiny_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import engine.models as models

    assert models.starter_model_dir() == Path(models.__file__).parent.parent / "resources" / (
        "starter-model"
    )
    monkeypatch.setattr(models, "starter_model_dir", lambda: tmp_path / "absent")
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get("starter", Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL and "starter model is missing" in err.value.message
    monkeypatch.setattr(models, "starter_model_dir", lambda: tiny_folder)
    model = ModelManager(device="cpu").get("starter", Recorder(), never)
    assert model.source == "starter" and model.family == "sd1"


# --------------------------------------------------------------------------- single files


@pytest.fixture(scope="module")
def tiny_configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Config folders for the tiny models, in the layout of engine/model_configs/."""
    root = tmp_path_factory.mktemp("configs")
    sd = StableDiffusionPipeline.from_pretrained(save_tiny_model(root / "sd1"))
    sd.save_pretrained(root / "sd2")
    save_tiny_model(root / "sd1-inpaint", inpaint_unet=True)
    tiny_sdxl_pipeline(root / "build", single_file_layout=True).save_pretrained(root / "sdxl")
    return root


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test on any attempt to open a network connection."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_checkpoint(pipe, family: str, path: Path, extra: dict | None = None) -> Path:  # noqa: ANN001
    from ldm_checkpoint import pipeline_to_ldm
    from safetensors.torch import save_file

    state = pipeline_to_ldm(pipe, family)
    state.update(extra or {})
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save({"state_dict": state, "global_step": 1}, path)
    return path


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """b holds a's weights, in b's precision ("auto" may load bfloat16 on this CPU)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key].to(sb[key].dtype), sb[key]), key


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_single_file_sd_loads_offline_with_the_same_weights(
    family: str, tiny_configs: Path, tmp_path: Path, no_network: None
) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / family)
    path = write_checkpoint(reference, family, tmp_path / f"{family}.safetensors")
    progress = Recorder()
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(path), progress, never)
    assert model.family == family
    assert isinstance(model.pipe, StableDiffusionPipeline)
    assert not model.is_inpaint_unet
    for name in ("unet", "vae", "text_encoder"):
        assert_same_weights(getattr(reference, name), getattr(model.pipe, name))
    assert model.pipe.scheduler.config.prediction_type == "epsilon"
    stages = [s for s, _ in progress.events]
    assert stages[0] == f"reading {path.name}"
    assert {"loading unet", "loading vae", "loading text_encoder"} <= set(stages)
    assert stages[-1] == "ready"
    out = model.pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="np")
    assert out.images.shape == (1, 32, 32, 3)


def test_single_file_sd2_v_prediction_marker(
    tiny_configs: Path, tmp_path: Path, no_network: None
) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd2")
    path = write_checkpoint(
        reference, "sd2", tmp_path / "v.safetensors", {"v_pred": torch.tensor([])}
    )
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(path), Recorder(), never)
    assert model.pipe.scheduler.config.prediction_type == "v_prediction"
    # ... and the A1111 convention: an original-config YAML next to the file.
    plain = write_checkpoint(reference, "sd2", tmp_path / "y.safetensors")
    (tmp_path / "y.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(plain), Recorder(), never)
    assert model.pipe.scheduler.config.prediction_type == "v_prediction"


def test_single_file_sdxl_loads_offline(
    tiny_configs: Path, tmp_path: Path, no_network: None
) -> None:
    from diffusers import StableDiffusionXLPipeline

    reference = StableDiffusionXLPipeline.from_pretrained(tiny_configs / "sdxl")
    path = write_checkpoint(reference, "sdxl", tmp_path / "xl.safetensors")
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(path), Recorder(), never)
    assert model.family == "sdxl"
    assert isinstance(model.pipe, StableDiffusionXLPipeline)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert_same_weights(getattr(reference, name), getattr(model.pipe, name))
    out = model.pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="np")
    assert out.images.shape == (1, 32, 32, 3)


def test_single_file_inpainting_unet(tiny_configs: Path, tmp_path: Path) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1-inpaint")
    path = write_checkpoint(reference, "sd1", tmp_path / "inpaint.safetensors")
    model = ModelManager(device="cpu", config_root=tiny_configs).get(str(path), Recorder(), never)
    assert model.is_inpaint_unet
    assert_same_weights(reference.unet, model.pipe.unet)


def test_pickle_checkpoints_are_refused_unless_allowed(tiny_configs: Path, tmp_path: Path) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "old.ckpt")
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu", config_root=tiny_configs).get(str(path), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "pickle" in err.value.message and "arbitrary code" in err.value.message
    manager = ModelManager(device="cpu", allow_pickle=True, config_root=tiny_configs)
    model = manager.get(str(path), Recorder(), never)
    assert_same_weights(reference.unet, model.pipe.unet)


def test_truncated_safetensors_is_a_model_error(tiny_configs: Path, tmp_path: Path) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "whole.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu", config_root=tiny_configs).get(str(cut), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "truncated or damaged" in err.value.message
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(EngineError, match="download it again"):
        ModelManager(device="cpu").get(str(junk), Recorder(), never)


def test_unsupported_architectures(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    unrelated = tmp_path / "classifier.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, unrelated)
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get(str(unrelated), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "not a Stable Diffusion checkpoint" in err.value.message
    assert "SDXL" in err.value.message  # says what does work

    flux_like = tmp_path / "flux.safetensors"
    save_file(
        {"model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(2)},
        flux_like,
    )
    with pytest.raises(EngineError, match="no text encoder DiffusionDesk recognises"):
        ModelManager(device="cpu").get(str(flux_like), Recorder(), never)

    playground = tmp_path / "playground.safetensors"
    save_file(
        {"model.diffusion_model.out.2.weight": torch.zeros(1), "edm_mean": torch.zeros(4)},
        playground,
    )
    with pytest.raises(EngineError, match="Playground v2.5"):
        ModelManager(device="cpu").get(str(playground), Recorder(), never)

    other = tmp_path / "model.gguf"
    other.write_bytes(b"GGUF")
    with pytest.raises(EngineError, match="not a model checkpoint DiffusionDesk can open"):
        ModelManager(device="cpu").get(str(other), Recorder(), never)


def test_cancel_between_single_file_stages(tiny_configs: Path, tmp_path: Path) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "c.safetensors")
    progress = Recorder()

    def cancel_after_text_encoder() -> bool:
        return any(stage == "loading text_encoder" for stage, _ in progress.events)

    manager = ModelManager(device="cpu", config_root=tiny_configs)
    with pytest.raises(JobCancelled):
        manager.get(str(path), progress, cancel_after_text_encoder)
    assert "loading unet" not in [s for s, _ in progress.events]
    assert manager.current is None


# --------------------------------------------------------------------------- the hub

OFFLINE_MESSAGE = (
    "Can't reach the Hugging Face hub to download stabilityai/sd-turbo; connect to the "
    "internet or open a local model folder or .safetensors file."
)


@pytest.mark.slow  # a fresh Python process importing torch and diffusers
@pytest.mark.parametrize("offline_flag", ["1", ""])
def test_hub_id_without_network_says_what_to_do(offline_flag: str, tmp_path: Path) -> None:
    """For real, in a fresh process: with HF_HUB_OFFLINE=1, and with the real network
    (unreachable here; where it is reachable this case is skipped)."""
    import os

    code = (
        "from engine.models import ModelManager\n"
        "from engine.api import EngineError\n"
        "try:\n"
        "    ModelManager(device='cpu').get('stabilityai/sd-turbo', lambda s, f: None,"
        " lambda: False)\n"
        "except EngineError as e:\n"
        "    print(e.kind.value + '|' + e.message)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": offline_flag}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    if not offline_flag and not out.stdout.strip():
        pytest.skip("the Hugging Face hub is reachable from here")
    assert out.stdout.strip() == f"model|{OFFLINE_MESSAGE}", out.stderr[-2000:]


def make_hub_cache(cache: Path, repo_id: str, model_folder: Path) -> Path:
    """Lay a diffusers folder out as huggingface_hub's cache holds a downloaded repo."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(model_folder, snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def test_hub_id_loads_from_the_local_hub_cache_offline(
    tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hub"
    snapshot = make_hub_cache(cache, "someone/tiny-sd", tiny_folder)
    progress = Recorder()
    model = ModelManager(device="cpu", cache_dir=cache).get("someone/tiny-sd", progress, never)
    assert model.source == "someone/tiny-sd" and model.family == "sd1"
    stages = [s for s, _ in progress.events]
    assert stages[0] == "looking up someone/tiny-sd on the Hugging Face hub"
    assert "loading unet" in stages and stages[-1] == "ready"
    assert (snapshot / "model_index.json").is_file()


def test_hub_id_of_an_unsupported_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "flux"
    folder.mkdir()
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "FluxPipeline", "transformer": ["diffusers", "X"]})
    )
    cache = tmp_path / "hub"
    make_hub_cache(cache, "someone/flux", folder)
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu", cache_dir=cache).get("someone/flux", Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "FluxPipeline, not a Stable Diffusion" in err.value.message


def test_download_progress_is_forwarded_and_cancellable() -> None:
    from engine import hub

    progress = Recorder()
    cancel = {"now": False}
    bar_class = hub.progress_bar_class("org/model", progress, lambda: cancel["now"])
    bar = bar_class(total=200, unit="B", desc="Reconstructing")
    bar.update(50)
    bar.update(150)
    assert [f for _, f in progress.events] == [0.25, 1.0]
    assert all(s.startswith("downloading org/model (") for s, _ in progress.events)
    cancel["now"] = True
    with pytest.raises(JobCancelled):
        bar.update(1)
    bar.close()
    cancel["now"] = False
    files = bar_class(total=3, unit="it")  # the per-file counter does not report bytes
    files.update(1)
    transfer = bar_class(total=10, unit="B", desc="Downloading bytes")  # network estimate
    transfer.update(5)
    assert len(progress.events) == 2


def test_download_progress_against_the_known_total() -> None:
    """The hub's byte bar learns its total file by file; the planned total is used."""
    from engine import hub

    progress = Recorder()
    bar_class = hub.progress_bar_class("org/model", progress, never, total_bytes=3_000_000_000)
    bar = bar_class(total=1000, unit="B", desc="Reconstructing")
    bar.update(1000)  # a small first file: not 100 %
    bar.total += 2_999_999_000
    for _ in range(300):
        bar.update(10_000_000)  # 1 % steps are reported, the rest is throttled
    assert progress.events[0] == ("downloading org/model (1 kB of 3.0 GB)", 1000 / 3e9)
    assert progress.events[-1] == ("downloading org/model (3.0 GB of 3.0 GB)", 1.0)
    fractions = [f for _, f in progress.events]
    assert fractions == sorted(fractions) and len(fractions) < 250


# --------------------------------------------------------------------------- shipped configs

# Parameter counts of the published models (UNet, VAE, text encoder(s)).
PUBLISHED_SIZES = {
    "sd1": (859_520_964, 83_653_863, 123_060_480, None),
    "sd2": (865_910_724, 83_653_863, 340_387_840, None),
    "sdxl": (2_567_463_684, 83_653_863, 123_060_480, 694_659_840),
}
DIFFUSERS_MODEL_TYPE = {"sd1": "v1", "sd2": "v2", "sdxl": "xl_base"}


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_shipped_configs_describe_the_real_models(family: str) -> None:
    """Full-size models built on the meta device (no memory) from engine/model_configs:
    their sizes are the published ones, and their original-layout keys are recognised
    both by diffusers' own detector and by ours."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from ldm_checkpoint import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.models import MODEL_CONFIGS
    from engine.single_file import inspect_checkpoint

    folder = MODEL_CONFIGS / family
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        text_2 = (
            CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
            if family == "sdxl"
            else None
        )

    def size(module: torch.nn.Module | None) -> int | None:
        return None if module is None else sum(p.numel() for p in module.parameters())

    assert (size(unet), size(vae), size(text), size(text_2)) == PUBLISHED_SIZES[family]

    state = unet_to_ldm(unet.state_dict(), dict(unet.config))
    state.update(vae_to_ldm(vae.state_dict(), dict(vae.config)))
    if family == "sd1":
        state.update(clip_to_ldm(text.state_dict(), "cond_stage_model.transformer."))
    elif family == "sd2":
        state.update(open_clip_to_ldm(text.state_dict(), "cond_stage_model.model."))
    else:
        state.update(clip_to_ldm(text.state_dict(), "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_ldm(text_2.state_dict(), "conditioner.embedders.1.model."))
    assert infer_diffusers_model_type(state) == DIFFUSERS_MODEL_TYPE[family]
    spec = inspect_checkpoint(state, Path("model.safetensors"))
    assert (spec.family, spec.in_channels) == (family, 4)


@pytest.mark.parametrize(("family", "pad_id"), [("sd1", 49407), ("sd2", 0), ("sdxl", 49407)])
def test_shipped_clip_tokenizer(family: str, pad_id: int) -> None:
    from engine.models import MODEL_CONFIGS
    from engine.single_file import _tokenizer

    tokenizer = _tokenizer(MODEL_CONFIGS / family, "tokenizer")
    assert len(tokenizer) == 49408
    ids = tokenizer("a photo of an astronaut riding a horse", padding="max_length").input_ids
    # The ids CLIP itself gives this sentence.
    assert ids[:10] == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert len(ids) == 77 and ids[-1] == pad_id
    if family == "sdxl":
        assert _tokenizer(MODEL_CONFIGS / family, "tokenizer_2").pad_token_id == 0


def test_folder_with_only_fp16_variant_weights(tmp_path: Path) -> None:
    folder = tmp_path / "variant"
    pipe = StableDiffusionPipeline.from_pretrained(save_tiny_model(tmp_path / "src"))
    pipe.save_pretrained(folder, variant="fp16")
    assert not (folder / "unet" / "diffusion_pytorch_model.safetensors").exists()
    model = ModelManager(device="cpu", dtype="float32").get(str(folder), Recorder(), never)
    assert model.pipe.unet.dtype == torch.float32
    assert_same_weights(pipe.unet, model.pipe.unet)


def test_missing_relative_path_is_not_taken_for_a_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EngineError, match="does not exist; check the path"):
        ModelManager(device="cpu").get("models/sd15", Recorder(), never)


def test_weights_missing_from_a_folder(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "m")
    for f in (folder / "vae").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get(str(folder), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL and "vae weights are missing" in err.value.message


# --------------------------------------------------------------------------- with the engine


@pytest.mark.slow
def test_engine_generates_from_single_files_with_the_real_manager(
    tiny_configs: Path, tmp_path: Path, no_network: None
) -> None:
    """The worker drives ModelManager: loading events, then images; switching models
    (SD 1.x file, then an SDXL file) releases the first; the PNG keeps the parameters."""
    import time

    from diffusers import StableDiffusionXLPipeline
    from engine_helpers import Recorder as EventRecorder

    from engine import metadata
    from engine.api import TERMINAL_KINDS, Finished, GenerationRequest, ModelLoading
    from engine.worker import Engine

    sd1 = write_checkpoint(
        StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1"),
        "sd1",
        tmp_path / "sd1.safetensors",
    )
    xl = write_checkpoint(
        StableDiffusionXLPipeline.from_pretrained(tiny_configs / "sdxl"),
        "sdxl",
        tmp_path / "xl.safetensors",
    )
    manager = ModelManager(device="cpu", config_root=tiny_configs)
    engine = Engine(manager)
    events = EventRecorder()
    engine.add_listener(events)
    try:
        base = GenerationRequest(prompt="a red circle", steps=2, width=32, height=32, seed=3)
        jobs = [engine.submit(base.with_changes(model=str(p))) for p in (sd1, xl)]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
            any(e.kind in TERMINAL_KINDS for e in events.of(j)) for j in jobs
        ):
            time.sleep(0.05)
        for job in jobs:
            finished = events.of(job, Finished)
            assert finished, events.of(job)
            assert finished[0].images[0].size == (32, 32)
            stages = [e.stage for e in events.of(job, ModelLoading)]
            assert stages[0].startswith("reading ") and stages[-1] == "ready"
        assert manager.current is not None and manager.current.family == "sdxl"
        done = events.of(jobs[1], Finished)[0]
        path = metadata.save_png(done.images[0], tmp_path / "xl.png", done.request, done.seeds[0])
        assert metadata.read_parameters(path) == done.request.with_changes(seed=done.seeds[0])
    finally:
        engine.shutdown(10)


# --------------------------------------------------------------------------- a local hub


class FakeHub:
    """Just enough of the Hugging Face hub's HTTP API, on localhost, to serve one repo."""

    commit = "a" * 40

    def __init__(self, repo_id: str, folder: Path) -> None:
        import hashlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                hub.requests.append(f"{self.command} {path}")
                as_json = {"Content-Type": "application/json"}
                if path == f"/api/models/{repo_id}/revision/main":
                    info = {
                        "id": repo_id,
                        "sha": hub.commit,
                        "siblings": [{"rfilename": f} for f in files],
                    }
                    return self.reply(200, json.dumps(info).encode(), as_json)
                if path == f"/api/models/{repo_id}/tree/{hub.commit}":
                    tree = [
                        {
                            "type": "file",
                            "path": f,
                            "size": len(b),
                            "oid": hashlib.sha1(b).hexdigest(),
                        }
                        for f, b in files.items()
                    ]
                    return self.reply(200, json.dumps(tree).encode(), as_json)
                prefix = f"/{repo_id}/resolve/{hub.commit}/"
                if path.startswith(prefix) and path[len(prefix) :] in files:
                    body = files[path[len(prefix) :]]
                    return self.reply(
                        200,
                        body,
                        {
                            "X-Repo-Commit": hub.commit,
                            "ETag": f'"{hashlib.sha1(body).hexdigest()}"',
                            "Content-Type": "application/octet-stream",
                        },
                    )
                return self.reply(404, b"{}", {"X-Error-Code": "EntryNotFound"})

            do_HEAD = do_GET  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fake_hub(tiny_folder: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    import huggingface_hub.constants as hub_constants

    hub = FakeHub("someone/tiny-sd", tiny_folder)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(
        hub_constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
    yield hub
    hub.close()


def test_hub_download_with_progress_from_a_local_hub(fake_hub: FakeHub, tmp_path: Path) -> None:
    """The real download code (snapshot_download over HTTP) against a hub on localhost."""
    progress = Recorder()
    manager = ModelManager(device="cpu", cache_dir=tmp_path / "cache")
    model = manager.get("someone/tiny-sd", progress, never)
    assert model.family == "sd1" and model.source == "someone/tiny-sd"
    downloads = [(s, f) for s, f in progress.events if s.startswith("downloading")]
    assert downloads[-1][1] == 1.0 and len(downloads) >= 2
    assert [f for _, f in downloads] == sorted(f for _, f in downloads)
    assert any("unet/diffusion_pytorch_model.safetensors" in r for r in fake_hub.requests)
    assert not any("safety_checker" in r for r in fake_hub.requests)
    # Already in the cache: a second manager loads without downloading the weights again.
    fake_hub.requests.clear()
    ModelManager(device="cpu", cache_dir=tmp_path / "cache").get(
        "someone/tiny-sd", Recorder(), never
    )
    assert not any(
        r.startswith("GET /someone/tiny-sd/resolve") and "safetensors" in r
        for r in fake_hub.requests
    )


def test_cancel_during_a_download(fake_hub: FakeHub, tmp_path: Path) -> None:
    progress = Recorder()

    def cancel_once_downloading() -> bool:
        return any(s.startswith("downloading") for s, _ in progress.events)

    manager = ModelManager(device="cpu", cache_dir=tmp_path / "cache")
    with pytest.raises(JobCancelled):
        manager.get("someone/tiny-sd", progress, cancel_once_downloading)
    assert manager.current is None


def test_configured_tiny_vae_for_a_single_file(tiny_configs: Path, tmp_path: Path) -> None:
    from diffusers import AutoencoderTiny

    from engine.models import default_tiny_vae_dirs

    assert default_tiny_vae_dirs()["sdxl"].name == "taesdxl"
    taesd = tmp_path / "taesd"
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(taesd)
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "m.safetensors")
    factors = [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5], [0.1, 0.1, 0.1]]
    (tmp_path / "m.latent_rgb.json").write_text(json.dumps({"factors": factors, "bias": [0, 0, 0]}))
    manager = ModelManager(device="cpu", config_root=tiny_configs, tiny_vae_dirs={"sd1": taesd})
    model = manager.get(str(path), Recorder(), never)
    assert isinstance(model.tiny_vae, AutoencoderTiny)
    assert model.latent_rgb == (factors, [0.0, 0.0, 0.0])
    plain = ModelManager(device="cpu", config_root=tiny_configs, tiny_vae_dirs={})
    assert plain.get(str(path), Recorder(), never).tiny_vae is None


def test_bad_latent_rgb_file_is_a_model_error(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "m")
    (folder / "latent_rgb.json").write_text(json.dumps({"factors": [[1, 2]], "bias": [0, 0, 0]}))
    with pytest.raises(EngineError, match="latent"):
        ModelManager(device="cpu").get(str(folder), Recorder(), never)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_half_precision_checkpoint_loads_in_the_chosen_dtype(
    precision: str, tiny_configs: Path, tmp_path: Path
) -> None:
    from ldm_checkpoint import pipeline_to_ldm
    from safetensors.torch import save_file

    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    state = {
        k: v.half() if v.is_floating_point() else v
        for k, v in pipeline_to_ldm(reference, "sd1").items()
    }
    save_file(state, tmp_path / "pruned-fp16.safetensors")
    manager = ModelManager(device="cpu", dtype=precision, config_root=tiny_configs)
    model = manager.get(str(tmp_path / "pruned-fp16.safetensors"), Recorder(), never)
    expected = getattr(torch, precision)
    assert model.dtype == expected
    for part in (model.pipe.unet, model.pipe.vae, model.pipe.text_encoder):
        assert {p.dtype for p in part.parameters()} == {expected}


def test_a_lora_is_not_a_model(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "style.safetensors"
    save_file(
        {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 4)}, path
    )
    with pytest.raises(EngineError, match="is a LoRA"):
        ModelManager(device="cpu").get(str(path), Recorder(), never)


@pytest.mark.parametrize(
    ("dropped", "part"),
    [
        ("model.diffusion_model.out.2.weight", "UNet"),
        ("first_stage_model.decoder.conv_out.weight", "VAE"),
        ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "text encoder"),
    ],
)
def test_checkpoint_with_missing_weights(
    dropped: str, part: str, tiny_configs: Path, tmp_path: Path
) -> None:
    reference = StableDiffusionPipeline.from_pretrained(tiny_configs / "sd1")
    path = write_checkpoint(reference, "sd1", tmp_path / "m.safetensors")
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    del state[dropped]
    save_file(state, path)
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu", config_root=tiny_configs).get(str(path), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert f"The checkpoint's {part} is incomplete" in err.value.message


def test_choose_files_prefers_the_variant_where_there_is_one() -> None:
    from engine.hub import choose_files

    files = [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",  # only a variant
        "text_encoder/model.safetensors",  # only plain
    ]
    common = ["model_index.json", "unet/config.json"]
    assert choose_files(files, None) == sorted(
        [
            *common,
            "unet/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.fp16.safetensors",
            "text_encoder/model.safetensors",
        ]
    )
    assert choose_files(files, "fp16") == sorted(
        [
            *common,
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "vae/diffusion_pytorch_model.fp16.safetensors",
            "text_encoder/model.safetensors",
        ]
    )


def test_hub_download_of_fp16_variants(
    tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hub_constants
    from diffusers import UNet2DConditionModel

    from engine import hub

    repo = tmp_path / "repo"
    shutil.copytree(tiny_folder, repo)
    UNet2DConditionModel.from_pretrained(tiny_folder / "unet").save_pretrained(
        repo / "unet", variant="fp16"
    )
    fake = FakeHub("someone/tiny-sd", repo)
    try:
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hub_constants, "ENDPOINT", fake.endpoint)
        monkeypatch.setattr(
            hub_constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            fake.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        )
        folder = hub.download("someone/tiny-sd", Recorder(), never, tmp_path / "c", "fp16")
    finally:
        fake.close()
    assert sorted(p.name for p in (folder / "unet").glob("*.safetensors")) == [
        "diffusion_pytorch_model.fp16.safetensors"
    ]
    assert (folder / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    # A folder holding only the variant loads (here in float32, on the CPU).
    model = ModelManager(device="cpu").get(str(folder), Recorder(), never)
    assert_same_weights(UNet2DConditionModel.from_pretrained(tiny_folder / "unet"), model.pipe.unet)
