"""Model sources: the starter model, paths that do not exist, and hub ids (offline, from the
cache, and downloaded with progress and cancel from a local stand-in for the hub)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from model_helpers import (
    FakeHub,
    Recorder,
    assert_same_weights,
    make_hub_cache,
    never,
)

from engine.api import EngineError, ErrorKind, JobCancelled
from engine.models import ModelManager

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu").get(str(tmp_path / "nope.safetensors"), Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "does not exist" in err.value.message


def test_missing_relative_path_is_not_taken_for_a_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EngineError, match="does not exist; check the path"):
        ModelManager(device="cpu").get("models/sd15", Recorder(), never)


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
    folder = tmp_path / "kandinsky"
    folder.mkdir()
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "KandinskyV22Pipeline", "movq": ["diffusers", "VQModel"]})
    )
    cache = tmp_path / "hub"
    make_hub_cache(cache, "someone/kandinsky", folder)
    with pytest.raises(EngineError) as err:
        ModelManager(device="cpu", cache_dir=cache).get("someone/kandinsky", Recorder(), never)
    assert err.value.kind == ErrorKind.MODEL
    assert "KandinskyV22Pipeline, not a model family DiffusionDesk runs" in err.value.message


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
    from diffusers import UNet2DConditionModel

    from engine import hub

    repo = tmp_path / "repo"
    shutil.copytree(tiny_folder, repo)
    UNet2DConditionModel.from_pretrained(tiny_folder / "unet").save_pretrained(
        repo / "unet", variant="fp16"
    )
    fake = FakeHub("someone/tiny-sd", repo)
    try:
        fake.point_hub_here(monkeypatch)
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
