"""A local HTTP server for download tests: files with Range support, cuts, slowness,
401/403/404, and the routes huggingface_hub calls for a model repo.

Started on 127.0.0.1 on a free port in a thread; `log` records every request line.
Hub routes served (what snapshot_download asks for, as of huggingface_hub 2.x):
  GET  /api/models/{owner}/{name}/revision/{rev}    repo info with the commit sha
  GET  /api/models/{owner}/{name}/tree/{sha}?recursive=...   the file listing
  HEAD /{owner}/{name}/resolve/{sha}/{path}         file metadata (commit, etag, size)
  GET  /{owner}/{name}/resolve/{sha}/{path}         the file, with ranges
A gated repo answers 403 with X-Error-Code: GatedRepo until the right token comes.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Behaviour:
    """How the server treats one path."""

    status: int = 200  # 401/403/404... answered instead of the file
    cut_after: int | None = None  # close after this many body bytes, once (not on probes)
    bytes_per_second: float | None = None  # send slowly
    ranges: bool = True  # honour Range requests
    stall_after: int | None = None  # send this many bytes, then nothing (until closed)
    content_type: str = "application/octet-stream"


@dataclass
class Repo:
    files: dict[str, bytes]
    gated_token: str | None = None  # token needed; None: public


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    repos: dict[str, Repo] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    ranges: list[str | None] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: ServerState

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _json(self, value: object, status: int = 200, headers: dict | None = None) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, val in (headers or {}).items():
            self.send_header(key, val)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str = "") -> None:
        headers = {"X-Error-Code": code} if code else {}
        self._json({"error": code or str(status)}, status, headers)

    def do_HEAD(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        state = self.state
        state.log.append(f"{self.command} {self.path}")
        state.auth.append(self.headers.get("Authorization"))
        state.ranges.append(self.headers.get("Range"))
        path = unquote(urlparse(self.path).path)
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            return self._api(parts[2] + "/" + parts[3], parts[4])
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = state.repos.get(parts[0] + "/" + parts[1])
            if repo is None:
                return self._error(401, "RepoNotFound")
            if not self._allowed(repo):
                return self._error(403, "GatedRepo")
            name = "/".join(parts[4:])
            if name not in repo.files:
                return self._error(404, "EntryNotFound")
            return self._file(path, repo.files[name], {"X-Repo-Commit": SHA})
        if path in state.files:
            behaviour = state.behaviour.get(path, Behaviour())
            if behaviour.status != 200:
                return self._error(behaviour.status)
            return self._file(path, state.files[path], {}, behaviour)
        return self._error(404)

    def _allowed(self, repo: Repo) -> bool:
        return repo.gated_token is None or self.headers.get("Authorization") == (
            f"Bearer {repo.gated_token}"
        )

    def _api(self, repo_id: str, what: str) -> None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound")
        if not self._allowed(repo):
            return self._error(403, "GatedRepo")
        entries = [
            {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            for name, data in repo.files.items()
        ]
        if what == "revision":
            siblings = [{"rfilename": name} for name in repo.files]
            return self._json({"id": repo_id, "sha": SHA, "siblings": siblings, "private": False})
        if what == "tree":
            return self._json(entries)
        return self._error(404)

    def _file(
        self, path: str, data: bytes, extra: dict, behaviour: Behaviour | None = None
    ) -> None:
        behaviour = behaviour or Behaviour()
        start, status = 0, 200
        wanted = self.headers.get("Range", "")
        if_range = self.headers.get("If-Range")
        if (
            wanted.startswith("bytes=")
            and behaviour.ranges
            and (if_range is None or if_range == _etag(data))
        ):
            first = wanted[6:].split("-")[0]
            start = int(first or 0)
            if start >= len(data) and len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            last = wanted[6:].split("-")[1]
            end = int(last) + 1 if last else len(data)
            status = 206
        else:
            end = len(data)
        body = data[start:end]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", _etag(data))
        self.send_header("Accept-Ranges", "bytes" if behaviour.ranges else "none")
        self.send_header("Content-Type", behaviour.content_type)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        self._send_body(path, body, behaviour)

    def _send_body(self, path: str, body: bytes, behaviour: Behaviour) -> None:
        limit = len(body)
        probe = self.headers.get("Range") == "bytes=0-0"  # a size probe, not the download
        if behaviour.cut_after is not None and behaviour.cut_after < len(body) and not probe:
            limit = behaviour.cut_after
            behaviour.cut_after = None  # only the first time
        if behaviour.stall_after is not None:
            self.wfile.write(body[: behaviour.stall_after])
            self.wfile.flush()
            self.state.stop.wait(60)
            self.close_connection = True
            return
        step = 4096 if behaviour.bytes_per_second else 1 << 16
        sent = 0
        try:
            while sent < limit and not self.state.stop.is_set():
                piece = body[sent : min(limit, sent + step)]
                self.wfile.write(piece)
                self.wfile.flush()
                sent += len(piece)
                if behaviour.bytes_per_second:
                    time.sleep(len(piece) / behaviour.bytes_per_second)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if sent < len(body):
            self.close_connection = True


class DownloadServer:
    """The server; use as a context manager. `url(path)` for files, `endpoint` for the hub."""

    def __init__(self) -> None:
        self.state = ServerState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="download-test-server", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.endpoint + path

    def __enter__(self) -> DownloadServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
