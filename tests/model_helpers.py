"""Helpers for the model tests: progress recorder, checkpoints written from pipelines, a
local stand-in for the Hugging Face hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []

    def __call__(self, stage: str, fraction: float) -> None:
        self.events.append((stage, fraction))


def never() -> bool:
    return False


def write_checkpoint(pipe, family: str, path: Path, extra: dict | None = None) -> Path:
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

            def do_GET(self) -> None:
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

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def point_hub_here(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make huggingface_hub download from this server, online."""
        import huggingface_hub.constants as hub_constants

        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hub_constants, "ENDPOINT", self.endpoint)
        monkeypatch.setattr(
            hub_constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            self.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def make_hub_cache(cache: Path, repo_id: str, model_folder: Path) -> Path:
    """Lay a diffusers folder out as huggingface_hub's cache holds a downloaded repo."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(model_folder, snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot
