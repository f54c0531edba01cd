"""The model library: folders of other tools, what a scan reads, what it remembers."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from library_files import (
    EMBEDDING_SD1_KEYS,
    EMBEDDING_SDXL_KEYS,
    FLUX_KEYS,
    LORA_SD1_KEYS,
    LORA_SDXL_KEYS,
    SD1_KEYS,
    SD2_KEYS,
    SDXL_KEYS,
    VAE_KEYS,
    write_diffusers_folder,
    write_safetensors,
)

from engine import library as library_module
from engine.library import (
    DONE,
    FAILED,
    GONE,
    LibraryError,
    ModelLibrary,
    read_safetensors_header,
)
from engine.library_scan import BackgroundScan

ROOT = Path(__file__).resolve().parents[2]


def _by_name(library: ModelLibrary) -> dict[str, tuple[str, str]]:
    return {e.name: (e.kind, e.family) for e in library.entries()}


def test_a_comfyui_models_tree_is_recognised_and_each_file_gets_kind_and_family(
    tmp_path: Path,
) -> None:
    models = tmp_path / "ComfyUI" / "models"
    write_safetensors(models / "checkpoints" / "sd15.safetensors", SD1_KEYS)
    write_safetensors(models / "checkpoints" / "sub" / "sd21.safetensors", SD2_KEYS)
    write_safetensors(models / "checkpoints" / "xl.safetensors", SDXL_KEYS)
    write_safetensors(models / "diffusion_models" / "flux-dev.safetensors", FLUX_KEYS)
    write_safetensors(models / "loras" / "detail.safetensors", LORA_SD1_KEYS)
    write_safetensors(models / "loras" / "xl-style.safetensors", LORA_SDXL_KEYS)
    write_safetensors(models / "embeddings" / "bad-hands.safetensors", EMBEDDING_SD1_KEYS)
    write_safetensors(models / "embeddings" / "xl-neg.safetensors", EMBEDDING_SDXL_KEYS)
    write_safetensors(models / "vae" / "kl-f8.safetensors", VAE_KEYS)
    write_safetensors(models / "upscale_models" / "4x.safetensors", {"model.0.weight": [3]})
    (models / "checkpoints" / "sd15.yaml").write_text("model: {}")
    (models / "checkpoints" / "sd15.preview.png").write_bytes(b"png")
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(models)

    summary = library.scan()

    assert _by_name(library) == {
        "sd15": ("checkpoint", "sd1"),
        "sd21": ("checkpoint", "sd2"),
        "xl": ("checkpoint", "sdxl"),
        "flux-dev": ("checkpoint", "flux"),
        "detail": ("lora", "sd1"),
        "xl-style": ("lora", "sdxl"),
        "bad-hands": ("embedding", "sd1"),
        "xl-neg": ("embedding", "sdxl"),
        "kl-f8": ("vae", ""),
        "4x": ("upscaler", ""),
    }
    assert summary["models"] == 10
    entry = library.find("sd21")
    assert entry is not None and entry.root == str(models.resolve())
    assert entry.size == (models / "checkpoints" / "sub" / "sd21.safetensors").stat().st_size


def test_an_a1111_webui_folder_is_recognised_with_its_top_level_embeddings(
    tmp_path: Path,
) -> None:
    webui = tmp_path / "stable-diffusion-webui"
    write_safetensors(webui / "models" / "Stable-diffusion" / "v1-5.safetensors", SD1_KEYS)
    write_safetensors(webui / "models" / "Lora" / "style.safetensors", LORA_SD1_KEYS)
    write_safetensors(webui / "models" / "VAE" / "vae-ft.safetensors", VAE_KEYS)
    write_safetensors(webui / "embeddings" / "easyneg.safetensors", EMBEDDING_SD1_KEYS)
    (webui / "models" / "Stable-diffusion" / "old.ckpt").write_bytes(b"\x80\x02not read")
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(webui / "models")

    library.scan()

    assert _by_name(library) == {
        "v1-5": ("checkpoint", "sd1"),
        "style": ("lora", "sd1"),
        "vae-ft": ("vae", ""),
        "easyneg": ("embedding", "sd1"),
        "old": ("checkpoint", ""),  # a pickle: never opened, known by its folder only
    }


def test_a_plain_folder_and_a_diffusers_folder_are_listed_by_their_headers(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "my models"
    write_safetensors(folder / "a.safetensors", SDXL_KEYS)
    write_safetensors(folder / "deep" / "er" / "lora.safetensors", LORA_SD1_KEYS)
    write_diffusers_folder(folder / "sdxl-base", "StableDiffusionXLPipeline")
    write_diffusers_folder(folder / "sd-base", "StableDiffusionPipeline")
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(folder)

    library.scan()

    assert _by_name(library) == {
        "a": ("checkpoint", "sdxl"),
        "lora": ("lora", "sd1"),
        "sdxl-base": ("checkpoint", "sdxl"),
        "sd-base": ("checkpoint", "sd1/sd2"),  # model_index.json does not tell them apart
    }
    diffusers = library.find("sdxl-base")
    assert diffusers is not None and diffusers.size > 100  # the folder's files together


def test_the_scan_reads_headers_only_and_never_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = b"\x01" * 3_000_000
    path = write_safetensors(tmp_path / "m" / "big.safetensors", SD1_KEYS, data=weights)
    header_bytes = path.stat().st_size - len(weights)
    read_total = [0]
    real_open = open

    class Counting:
        def __init__(self, f) -> None:
            self.f = f

        def read(self, n: int = -1) -> bytes:
            data = self.f.read(n)
            read_total[0] += len(data)
            return data

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    monkeypatch.setattr(
        library_module, "open", lambda p, mode="r": Counting(real_open(p, mode)), raising=False
    )
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(tmp_path / "m")
    library.scan()

    assert _by_name(library) == {"big": ("checkpoint", "sd1")}
    assert read_total[0] == header_bytes


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "too short"),
        (struct.pack("<Q", 2**62), "more than any real model"),
        (struct.pack("<Q", 500) + b"{}", "truncated"),
        (struct.pack("<Q", 9) + b"not json!", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (struct.pack("<Q", 20_000) + b"[" * 10_000 + b"]" * 10_000, "not valid JSON"),
    ],
    ids=["empty", "huge-length", "truncated", "garbage", "array", "deep-nesting"],
)
def test_a_damaged_header_is_listed_with_the_reason_and_the_scan_goes_on(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "broken.safetensors").write_bytes(content)
    write_safetensors(folder / "fine.safetensors", SD1_KEYS)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(folder)

    library.scan()

    broken = library.find("broken")
    assert broken is not None and broken.kind == "checkpoint" and broken.family == ""
    assert reason in broken.problem
    assert library.find("fine") is not None and library.find("fine").family == "sd1"  # type: ignore[union-attr]


def test_header_reading_is_capped(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "x.safetensors", SD1_KEYS)
    with pytest.raises(ValueError, match="more than any real model"):
        read_safetensors_header(path, cap=16)
    assert "model.diffusion_model.input_blocks.0.0.weight" in read_safetensors_header(path)


def test_folders_removals_and_last_use_are_remembered(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    write_safetensors(folder / "checkpoints" / "keep.safetensors", SD1_KEYS)
    write_safetensors(folder / "checkpoints" / "hide.safetensors", SD1_KEYS)
    library = ModelLibrary(tmp_path / "data")
    added = library.add_folder(folder)
    library.scan()
    keep, hide = library.find("keep"), library.find("hide")
    assert keep is not None and hide is not None
    library.mark_used(keep.path, when=1_700_000_000.0)
    library.remove_from_list(hide.path)

    again = ModelLibrary(tmp_path / "data")
    assert again.folders() == [tmp_path / "data" / "models", added]
    assert [e.name for e in again.load()] == ["keep"]  # from the index, no folder read
    assert again.last_used(keep.path) == 1_700_000_000.0
    again.scan()
    assert [e.name for e in again.entries()] == ["keep"]  # a scan does not bring it back
    assert not list((tmp_path / "data").glob("*.tmp"))
    state = json.loads((tmp_path / "data" / "library.json").read_text())
    assert state["hidden"] == [hide.path]


def test_a_rescan_skips_unchanged_files_and_drops_deleted_ones(tmp_path: Path) -> None:
    folder = tmp_path / "loras"
    for n in range(5):
        write_safetensors(folder / f"l{n}.safetensors", LORA_SD1_KEYS)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(folder)
    assert library.scan()["headers_read"] == 5
    (folder / "l0.safetensors").unlink()
    write_safetensors(folder / "l1.safetensors", SDXL_KEYS)  # same name, now a checkpoint
    os.utime(folder / "l1.safetensors", (time.time() + 5, time.time() + 5))

    summary = ModelLibrary(tmp_path / "data").scan()

    assert (summary["headers_read"], summary["gone"], summary["models"]) == (1, 1, 4)
    fresh = ModelLibrary(tmp_path / "data")
    names = {e.name: e.kind for e in fresh.load()}
    assert names == {"l1": "checkpoint", "l2": "lora", "l3": "lora", "l4": "lora"}


def test_removing_a_folder_drops_its_models(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write_safetensors(one / "a.safetensors", SD1_KEYS)
    write_safetensors(two / "b.safetensors", SD1_KEYS)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(one)
    added_two = library.add_folder(two)
    library.scan()
    library.remove_folder(added_two)
    assert [e.name for e in library.entries()] == ["a"]
    library.scan()
    assert [e.name for e in ModelLibrary(tmp_path / "data").load()] == ["a"]


def test_adding_a_missing_or_repeated_folder_says_what_to_change(tmp_path: Path) -> None:
    library = ModelLibrary(tmp_path / "data")
    with pytest.raises(LibraryError, match="is not a folder"):
        library.add_folder(tmp_path / "nowhere")
    (tmp_path / "f").mkdir()
    library.add_folder(tmp_path / "f")
    with pytest.raises(LibraryError, match="already in the library"):
        library.add_folder(tmp_path / "f")


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"folders": 5, "hidden": {"a": 1}, "last_used": [1]}'],
)
def test_a_damaged_library_file_is_set_aside_with_a_notice(tmp_path: Path, content: bytes) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "library.json").write_bytes(content)
    library = ModelLibrary(data)
    if content.startswith(b'{"folders"'):
        # Valid JSON with wrong types: the wrong parts are ignored, nothing set aside.
        assert library.notice == "" and library.added_folders() == []
        return
    assert "was damaged" in library.notice and "set aside" in library.notice
    assert list(data.glob("library.json.damaged-*"))
    library.add_folder(tmp_path)  # and it works afresh
    assert ModelLibrary(data).added_folders() == [tmp_path.resolve()]


def test_find_matches_name_file_name_or_path_and_prefers_the_last_used(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "a" / "same.safetensors", SD1_KEYS)
    write_safetensors(tmp_path / "b" / "same.safetensors", SDXL_KEYS)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(tmp_path / "a")
    library.add_folder(tmp_path / "b")
    library.scan()
    library.mark_used(str((tmp_path / "b" / "same.safetensors").resolve()))
    assert library.find("SAME").family == "sdxl"  # type: ignore[union-attr]
    assert library.find("same.safetensors").family == "sdxl"  # type: ignore[union-attr]
    assert library.find(str((tmp_path / "a" / "same.safetensors").resolve())).family == "sd1"  # type: ignore[union-attr]
    assert library.find("other") is None and library.find("  ") is None
    assert library.find("same", kind="lora") is None


def test_the_background_scan_sends_what_the_scan_in_place_finds(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    for n in range(40):
        write_safetensors(folder / f"m{n:02}.safetensors", SD1_KEYS if n % 2 else SDXL_KEYS)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(folder)
    scan = BackgroundScan(library.folders(), library.index_path, batch_size=8)
    messages = []
    deadline = time.monotonic() + 60
    while not scan.finished and time.monotonic() < deadline:
        messages += scan.poll(100)
        time.sleep(0.01)
    scan.close(wait=10)

    assert messages[-1][0] == DONE, messages[-1]
    for message in messages:
        library.apply(message)
    assert len(library.entries()) == 40
    assert max(len(m[1]) for m in messages[:-1]) <= 8  # small batches
    assert library.find("m01").family == "sd1"  # type: ignore[union-attr]
    assert library.find("m00").family == "sdxl"  # type: ignore[union-attr]
    assert len(ModelLibrary(tmp_path / "data").load()) == 40  # the child wrote the index


def test_a_cancelled_background_scan_ends_and_keeps_the_old_index(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    for n in range(300):
        write_safetensors(folder / f"m{n:03}.safetensors", SD1_KEYS)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(folder)
    scan = BackgroundScan(library.folders(), library.index_path, batch_size=1)
    scan.cancel()
    deadline = time.monotonic() + 60
    messages = []
    while not scan.finished and time.monotonic() < deadline:
        messages += scan.poll(1000)
        time.sleep(0.01)
    scan.close(wait=10)
    assert scan.finished and not scan.alive
    assert all(kind not in (DONE, FAILED, GONE) for kind, _ in messages)
    assert not library.index_path.exists()


def test_the_library_modules_import_neither_qt_nor_torch() -> None:
    code = (
        "import sys, engine.library, engine.library_scan, engine.checkpoint_keys;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'guiapp')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_single_file_loading_and_the_library_share_one_key_prefix_table() -> None:
    from engine import checkpoint_keys, single_file

    assert single_file.UNET_PREFIX is checkpoint_keys.UNET_PREFIX
    assert single_file.SDXL_OPEN_CLIP is checkpoint_keys.SDXL_OPEN_CLIP


def test_a_model_name_from_another_tool_resolves_to_the_library_path(tmp_path: Path) -> None:
    from engine.library import resolve_model_name

    models = tmp_path / "ComfyUI" / "models"
    write_safetensors(models / "checkpoints" / "sdxl" / "juggernautXL.safetensors", SDXL_KEYS)
    write_safetensors(models / "loras" / "ink.safetensors", LORA_SD1_KEYS)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(models)
    library.scan()
    path = str((models / "checkpoints" / "sdxl" / "juggernautXL.safetensors").resolve())

    fresh = ModelLibrary(tmp_path / "data")  # reads the index, no folder
    assert resolve_model_name("sdxl/juggernautXL.safetensors", fresh) == path  # ComfyUI
    assert resolve_model_name("sdxl\\juggernautXL.safetensors", fresh) == path  # Windows
    assert resolve_model_name("juggernautXL", fresh) == path  # A1111's Model field
    assert resolve_model_name("starter", fresh) == "starter"
    assert resolve_model_name(path, fresh) == path
    assert resolve_model_name("ink", fresh) is None  # a LoRA is not a model to use
    assert resolve_model_name("dreamshaper_8", fresh) is None
    assert resolve_model_name("", fresh) is None


@pytest.mark.parametrize(
    "content",
    [b"{oops", b'{"version": 1, "entries": [[1], "x", null, ["a", "b"]]}', b'{"version": 99}'],
)
def test_a_damaged_index_is_rebuilt_by_the_next_scan(tmp_path: Path, content: bytes) -> None:
    write_safetensors(tmp_path / "m" / "a.safetensors", SD1_KEYS)
    library = ModelLibrary(tmp_path / "data")
    library.add_folder(tmp_path / "m")
    library.index_path.write_bytes(content)
    assert library.load() == []
    assert library.scan()["headers_read"] == 1
    assert [e.name for e in ModelLibrary(tmp_path / "data").load()] == ["a"]
