"""Downloads into the library, against a local server on 127.0.0.1 that the tests start."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from download_server import Behaviour, DownloadServer, Repo

from engine import downloads
from engine.downloads import Download, DownloadCancelled, DownloadError, DownloadProgress

DATA = bytes(range(256)) * 4096  # 1 MiB
TOKEN = "hf_test_token_123"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[DownloadServer]:
    with DownloadServer() as running:
        monkeypatch.setenv("HF_ENDPOINT", running.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield running


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


def other_host(server: DownloadServer, path: str) -> str:
    """The same server under a name that is not the hub's (HF_ENDPOINT uses 127.0.0.1)."""
    return server.url(path).replace("127.0.0.1", "localhost")


def fetch(plan: downloads.DownloadPlan) -> tuple[Path, list[DownloadProgress]]:
    seen: list[DownloadProgress] = []
    return Download(plan).run(seen.append), seen


def test_a_url_downloads_into_the_kind_folder_with_progress_and_speed(
    server: DownloadServer, models: Path
) -> None:
    server.state.files["/files/detail-tweaker.safetensors"] = DATA
    plan = downloads.plan(server.url("/files/detail-tweaker.safetensors"), models, kind="lora")
    assert (plan.total, plan.to_fetch, plan.ask_first) == (len(DATA), len(DATA), False)
    assert plan.target == models / "loras" / "detail-tweaker.safetensors"

    path, seen = fetch(plan)

    assert path.read_bytes() == DATA
    assert not list(path.parent.glob("*.part*"))
    assert seen[-1].done == len(DATA) and seen[-1].fraction == 1.0
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert "MB of" in seen[-1].text() and "/s" in seen[-1].text()


def test_a_cut_connection_keeps_the_part_and_the_next_try_resumes_with_a_range(
    server: DownloadServer, models: Path
) -> None:
    server.state.files["/m.safetensors"] = DATA
    server.state.behaviour["/m.safetensors"] = Behaviour(cut_after=300_000)
    plan = downloads.plan(server.url("/m.safetensors"), models)

    with pytest.raises(DownloadError, match="broke after .* try again: the download goes on"):
        fetch(plan)
    part = models / "checkpoints" / "m.safetensors.part"
    assert part.stat().st_size == 300_000 and not plan.target.exists()

    again = downloads.plan(server.url("/m.safetensors"), models)
    assert again.to_fetch == len(DATA) - 300_000
    path, seen = fetch(again)

    assert path.read_bytes() == DATA
    assert "bytes=300000-" in server.state.ranges
    assert seen[0].done == 300_000  # the part counts from the start


def test_a_changed_file_is_not_stitched_to_an_old_part(
    server: DownloadServer, models: Path
) -> None:
    server.state.files["/m.safetensors"] = DATA
    server.state.behaviour["/m.safetensors"] = Behaviour(cut_after=100_000)
    plan = downloads.plan(server.url("/m.safetensors"), models)
    with pytest.raises(DownloadError):
        fetch(plan)
    new_data = DATA[::-1]
    server.state.files["/m.safetensors"] = new_data  # same size, new ETag

    path, _ = fetch(downloads.plan(server.url("/m.safetensors"), models))

    assert path.read_bytes() == new_data


def test_a_server_without_ranges_starts_over_and_still_finishes(
    server: DownloadServer, models: Path
) -> None:
    server.state.files["/m.bin"] = DATA
    server.state.behaviour["/m.bin"] = Behaviour(cut_after=200_000, ranges=False)
    plan = downloads.plan(server.url("/m.bin"), models)
    with pytest.raises(DownloadError):
        fetch(plan)
    path, _ = fetch(downloads.plan(server.url("/m.bin"), models))
    assert path.read_bytes() == DATA


def test_cancel_stops_a_slow_download_at_once_and_keeps_the_part_for_later(
    server: DownloadServer, models: Path
) -> None:
    server.state.files["/slow.safetensors"] = DATA
    server.state.behaviour["/slow.safetensors"] = Behaviour(bytes_per_second=50_000)
    download = Download(downloads.plan(server.url("/slow.safetensors"), models))
    started = threading.Event()
    outcome: list[BaseException] = []

    def work() -> None:
        try:
            download.run(lambda p: started.set() if p.done > 8000 else None)
        except BaseException as exc:  # the test reads it
            outcome.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    assert started.wait(30)
    download.cancel()
    worker.join(20)

    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], DownloadCancelled)
    part = models / "checkpoints" / "slow.safetensors.part"
    assert 8000 <= part.stat().st_size < len(DATA)
    server.state.behaviour["/slow.safetensors"] = Behaviour()
    path, _ = fetch(downloads.plan(server.url("/slow.safetensors"), models))
    assert path.read_bytes() == DATA


def test_a_stalled_server_is_reported_as_such(
    server: DownloadServer, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "STALL_SECONDS", 0.5)
    server.state.files["/stuck.safetensors"] = DATA
    server.state.behaviour["/stuck.safetensors"] = Behaviour(stall_after=5000)
    plan = downloads.plan(server.url("/stuck.safetensors"), models)
    with pytest.raises(DownloadError, match=r"stopped sending data .* goes on where it stopped"):
        fetch(plan)


@pytest.mark.parametrize(
    ("status", "hub_host", "message"),
    [
        (401, True, "gated or private: accept its licence .* Token field, or set HF_TOKEN"),
        (403, True, "gated or private"),
        (403, False, r"refused the download \(403\).*API key"),
        (404, False, r"no such file \(404\): check the URL"),
        (404, True, r"no such file \(404\)"),
    ],
)
def test_refusals_say_what_to_do(
    server: DownloadServer, models: Path, status: int, hub_host: bool, message: str
) -> None:
    server.state.files["/x.safetensors"] = DATA
    server.state.behaviour["/x.safetensors"] = Behaviour(status=status)
    url = server.url("/x.safetensors") if hub_host else other_host(server, "/x.safetensors")
    with pytest.raises(DownloadError, match=message):
        downloads.plan(url, models)


def test_no_network_says_so(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError, match="Can't reach 127.0.0.1: check the internet"):
        downloads.plan(f"http://127.0.0.1:{port}/m.safetensors", models)
    with pytest.raises(DownloadError, match="Can't reach the Hugging Face hub"):
        downloads.plan("acme/tiny-sd", models)


def test_too_little_disk_space_stops_before_anything_is_written(
    server: DownloadServer, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import namedtuple

    server.state.files["/big.safetensors"] = DATA
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(downloads.shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 10**6))
    with pytest.raises(DownloadError, match=r"Not enough free disk space .* needs 1.0 MB"):
        downloads.plan(server.url("/big.safetensors"), models)
    assert not models.exists()


def test_big_downloads_ask_first(
    server: DownloadServer, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.state.files["/big.safetensors"] = DATA
    monkeypatch.setattr(downloads, "ASK_ABOVE_BYTES", len(DATA) - 1)
    assert downloads.plan(server.url("/big.safetensors"), models).ask_first


def test_a_token_goes_to_the_hub_only(
    server: DownloadServer, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.state.files["/m.safetensors"] = DATA
    fetch(downloads.plan(other_host(server, "/m.safetensors"), models, token=TOKEN))
    assert all(auth is None for auth in server.state.auth)
    (models / "checkpoints" / "m.safetensors").unlink()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fetch(downloads.plan(server.url("/m.safetensors"), models))
    assert server.state.auth[-1] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Type a Hugging Face repo id"),
        ("not a model", "neither a repo id"),
        ("ftp://example.com/m.safetensors", "neither a repo id"),
    ],
)
def test_a_source_that_is_neither_says_what_to_type(models: Path, text: str, message: str) -> None:
    with pytest.raises(DownloadError, match=message):
        downloads.plan(text, models)


def test_a_file_already_there_is_not_overwritten(server: DownloadServer, models: Path) -> None:
    server.state.files["/m.safetensors"] = DATA
    fetch(downloads.plan(server.url("/m.safetensors"), models))
    with pytest.raises(DownloadError, match="is already there"):
        downloads.plan(server.url("/m.safetensors"), models)


# ----------------------------------------------------------------------------- the hub

INDEX = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
REPO_FILES = {
    "model_index.json": json.dumps(INDEX).encode(),
    "unet/config.json": b"{}",
    "unet/diffusion_pytorch_model.safetensors": b"\x01" * 400_000,
    "unet/diffusion_pytorch_model.fp16.safetensors": b"\x02" * 200_000,
    "v1-5-pruned.ckpt": b"pickle, never fetched",
    "README.md": b"# card",
}


def test_a_hub_repo_downloads_the_pipeline_files_into_the_library(
    server: DownloadServer, models: Path
) -> None:
    server.state.repos["acme/tiny-sd"] = Repo(dict(REPO_FILES))
    plan = downloads.plan("acme/tiny-sd", models)
    assert plan.is_hub and plan.target == models / "checkpoints" / "acme--tiny-sd"
    assert plan.files == (
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",  # half the bytes
    )
    assert plan.total == plan.to_fetch == 2 + 200_000 + len(REPO_FILES["model_index.json"])

    folder, seen = fetch(plan)

    assert (folder / "model_index.json").read_bytes() == REPO_FILES["model_index.json"]
    assert (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").stat().st_size == 200_000
    assert not (folder / "v1-5-pruned.ckpt").exists()
    assert seen[-1].done == plan.total
    assert any(
        line.startswith("GET /api/models/acme/tiny-sd/revision/") for line in server.state.log
    )
    again = downloads.plan("acme/tiny-sd", models)
    assert again.to_fetch == 0  # all there: nothing to fetch


def test_a_gated_repo_asks_for_a_token_and_works_with_one(
    server: DownloadServer, models: Path
) -> None:
    server.state.repos["acme/gated"] = Repo(dict(REPO_FILES), gated_token=TOKEN)
    with pytest.raises(
        DownloadError, match="acme/gated is gated or private.*Token field.*HF_TOKEN"
    ):
        downloads.plan("acme/gated", models)
    folder, _ = fetch(downloads.plan("acme/gated", models, token=TOKEN))
    assert (folder / "model_index.json").exists()


def test_a_missing_repo_and_a_repo_that_is_no_pipeline_say_so(
    server: DownloadServer, models: Path
) -> None:
    with pytest.raises(DownloadError, match="no model acme/nothing on the hub, or it is private"):
        downloads.plan("acme/nothing", models)
    server.state.repos["acme/lora"] = Repo({"lora.safetensors": b"\0" * 10})
    with pytest.raises(DownloadError, match="not a diffusers model .* paste the file's URL"):
        downloads.plan("acme/lora", models)


def test_cancelling_a_hub_download_stops_it(server: DownloadServer, models: Path) -> None:
    server.state.repos["acme/tiny-sd"] = Repo(dict(REPO_FILES))
    download = Download(downloads.plan("acme/tiny-sd", models))
    download.cancel()
    with pytest.raises(DownloadCancelled):
        download.run(lambda p: None)


def test_a_link_to_a_web_page_is_refused_with_what_link_to_use(
    server: DownloadServer, models: Path
) -> None:
    server.state.files["/models/4201"] = b"<html>log in</html>"
    server.state.behaviour["/models/4201"] = Behaviour(content_type="text/html; charset=utf-8")
    with pytest.raises(DownloadError, match="answered with a web page.*download link"):
        downloads.plan(other_host(server, "/models/4201"), models)
