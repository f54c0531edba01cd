"""Downloading models into the library: a Hugging Face hub repo id, or a file URL from a
model site, with byte progress and speed, cancel, resume, a free-space check first and
sentences a person can act on when it fails.

Two steps, so the window can ask before a big download: `plan()` learns what would be
fetched and how many bytes (and checks the disk), `Download.run()` fetches it.

- A hub repo id ("owner/name") goes through huggingface_hub's `snapshot_download` into
  `<models>/checkpoints/owner--name`, with only the files a pipeline needs
  (engine/hub.py's patterns). The hub resumes its own partial files; a tqdm class
  reports bytes and raises to cancel.
- A URL streams into `<file>.part` beside its final name; an interrupted or cancelled
  download resumes from there with an HTTP Range request (If-Range keeps a changed file
  from being stitched to an old part), and the part becomes the file only when complete.

A token (the window's token field, else HF_TOKEN) goes to the Hugging Face hub only,
never to another site. No Qt and no torch: the window runs `run()` in a worker thread.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine import hub
from engine.asset_folders import SUBFOLDERS, AssetKind

ASK_ABOVE_BYTES = 2 * 10**9  # the window asks before downloads larger than this
SPACE_MARGIN_BYTES = 200 * 10**6  # left free on the disk after a download
STALL_SECONDS = 30.0  # no byte for this long: the server has stalled
CHUNK = 1 << 20
USER_AGENT = "DiffusionDesk (model library download)"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_HF_HOSTS = ("huggingface.co", "hf.co")


class DownloadError(Exception):
    """A download that cannot start or go on; the message says what to do."""


class DownloadCancelled(Exception):
    """The person cancelled; what was fetched stays for a resume."""


@dataclass(frozen=True)
class DownloadProgress:
    done: int  # bytes on disk for this download (a resumed part counts)
    total: int | None
    speed: float  # bytes per second, over the last few seconds

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else -1.0

    def text(self) -> str:
        size = format_bytes(self.done)
        if self.total:
            size += f" of {format_bytes(self.total)}"
        return f"{size} · {format_bytes(self.speed)}/s"


@dataclass(frozen=True)
class DownloadPlan:
    source: str  # the repo id or URL as given
    is_hub: bool
    target: Path  # the folder (hub) or file (URL) the model ends up as
    total: int | None  # bytes of the whole model, when the server says
    to_fetch: int | None  # bytes still to come (minus a part already here)
    files: tuple[str, ...] = ()  # hub: the repo files to fetch
    token: str | None = field(default=None, repr=False)
    endpoint: str | None = None

    @property
    def ask_first(self) -> bool:
        return (self.to_fetch or 0) > ASK_ABOVE_BYTES


def format_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} kB"


def _token(token: str | None) -> str | None:
    """The token field's, else the one huggingface_hub knows (HF_TOKEN, `hf auth login`)."""
    from huggingface_hub import get_token

    return (token or "").strip() or get_token() or None


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def is_hub_id(text: str) -> bool:
    return bool(_REPO_ID.match(text.strip())) and "://" not in text


def folder_for(kind: str, models_folder: Path) -> Path:
    """Where a downloaded file of this kind goes in our own models folder."""
    try:
        name = SUBFOLDERS[AssetKind(kind)][0]
    except (KeyError, ValueError):
        name = SUBFOLDERS[AssetKind.CHECKPOINT][0]
    return models_folder / name


def gated_message(what: str) -> str:
    return (
        f"{what} is gated or private: accept its licence on huggingface.co while logged in, "
        "then paste an access token (huggingface.co/settings/tokens) into the Token field, "
        "or set HF_TOKEN, and try again."
    )


def offline_message(where: str) -> str:
    return f"Can't reach {where}: check the internet connection (or a proxy) and try again."


# ----------------------------------------------------------------------------- planning


def plan(
    source: str, models_folder: Path, kind: str = "checkpoint", token: str | None = None
) -> DownloadPlan:
    """What downloading source would fetch; DownloadError for a bad source, an
    unreachable server, a missing or gated file, or too little free disk space."""
    text = source.strip()
    if not text:
        raise DownloadError("Type a Hugging Face repo id (owner/name) or a file URL.")
    if is_hub_id(text):
        result = _plan_hub(text, models_folder, _token(token))
    else:
        parsed = urllib.parse.urlparse(text)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise DownloadError(
                f"{text[:80]!r} is neither a repo id like 'stabilityai/sd-turbo' nor an "
                "http(s) URL of a model file."
            )
        result = _plan_url(text, folder_for(kind, models_folder), _token(token))
    check_space(result)
    return result


def check_space(plan: DownloadPlan) -> None:
    folder = plan.target if plan.is_hub else plan.target.parent
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    needed = (plan.to_fetch or 0) + SPACE_MARGIN_BYTES
    if plan.to_fetch is not None and free < needed:
        raise DownloadError(
            f"Not enough free disk space in {probe}: the download needs "
            f"{format_bytes(plan.to_fetch)} and {format_bytes(free)} is free; free some space "
            "or choose a model folder elsewhere."
        )


class _SilentBar(tqdm):
    """A tqdm that prints nothing (the hub's file-count bar during planning)."""

    def __init__(self, *args: object, **kwargs: Any) -> None:
        kwargs.pop("name", None)
        kwargs["file"] = io.StringIO()
        super().__init__(*args, **kwargs)


def _hub_error(repo_id: str, exc: BaseException) -> DownloadError:
    from huggingface_hub.errors import (
        DryRunError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cause = exc.__cause__ if isinstance(exc, DryRunError) and exc.__cause__ else exc
    if isinstance(cause, GatedRepoError):
        return DownloadError(gated_message(repo_id))
    if isinstance(cause, RepositoryNotFoundError):
        return DownloadError(
            f"There is no model {repo_id} on the hub, or it is private: check the name; for a "
            "private repo, put an access token in the Token field (or set HF_TOKEN)."
        )
    if isinstance(cause, RevisionNotFoundError):
        return DownloadError(f"{repo_id} has no main branch to download.")
    status = getattr(getattr(cause, "response", None), "status_code", None)
    if isinstance(cause, HfHubHTTPError) and status in (401, 403):
        return DownloadError(gated_message(repo_id))
    if (
        isinstance(cause, LocalEntryNotFoundError | DryRunError | OSError)
        or "connect" in str(type(cause)).lower()
    ):
        return DownloadError(offline_message("the Hugging Face hub"))
    return DownloadError(f"Downloading {repo_id} from the hub failed: {cause}")


def _plan_hub(repo_id: str, models_folder: Path, token: str | None) -> DownloadPlan:
    from huggingface_hub import snapshot_download

    target = folder_for(AssetKind.CHECKPOINT.value, models_folder) / repo_id.replace("/", "--")
    try:
        listing = snapshot_download(
            repo_id,
            allow_patterns=hub.ALLOW_PATTERNS,
            ignore_patterns=[p for p in hub.IGNORE_PATTERNS if p not in ("*.fp16.*", "*.bf16.*")],
            local_dir=target,
            token=token,
            endpoint=_endpoint(),
            tqdm_class=_SilentBar,
            dry_run=True,
        )
    except Exception as exc:  # every hub failure becomes one sentence
        raise _hub_error(repo_id, exc) from exc
    names = [f.filename for f in listing]
    if "model_index.json" not in names:
        raise DownloadError(
            f"{repo_id} is not a diffusers model (it has no model_index.json); for a single "
            "file from it, paste the file's URL (…/resolve/main/name.safetensors) instead."
        )
    files = hub.choose_files(names, "fp16")
    keep = set(files)
    total = sum(f.file_size or 0 for f in listing if f.filename in keep)
    to_fetch = sum(f.file_size or 0 for f in listing if f.filename in keep and f.will_download)
    return DownloadPlan(repo_id, True, target, total, to_fetch, tuple(files), token, _endpoint())


def _is_hf(url: str) -> bool:
    host = (urllib.parse.urlparse(url).hostname or "").lower()
    hf = urllib.parse.urlparse(_endpoint()).hostname or ""
    return host == hf or any(host == h or host.endswith("." + h) for h in _HF_HOSTS)


def _request(url: str, token: str | None, method: str = "GET", **headers: str) -> Any:
    request = urllib.request.Request(url, method=method)
    request.add_header("User-Agent", USER_AGENT)
    if token and _is_hf(url):
        request.add_header("Authorization", f"Bearer {token}")
    for key, value in headers.items():
        request.add_header(key.replace("_", "-"), value)
    return request


def _url_error(url: str, exc: BaseException) -> DownloadError:
    host = urllib.parse.urlparse(url).hostname or url
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in (401, 403):
            if _is_hf(url):
                return DownloadError(gated_message(url.rsplit("/", 1)[-1]))
            return DownloadError(
                f"{host} refused the download ({exc.code}): the file needs you to be logged "
                "in there; add the site's API key to the URL as it documents (for CivitAI: "
                "?token=YOUR_KEY) and try again."
            )
        if exc.code == 404:
            return DownloadError(f"{host} has no such file (404): check the URL.")
        if exc.code == 429:
            return DownloadError(f"{host} asks us to slow down (429): try again in a minute.")
        return DownloadError(f"{host} answered {exc.code} {exc.reason}: try again later.")
    if isinstance(exc, TimeoutError | socket.timeout):
        return DownloadError(
            f"{host} stopped sending data (nothing for {STALL_SECONDS:.0f} s); try again: "
            "the download goes on where it stopped."
        )
    return DownloadError(offline_message(host))


def _file_name(url: str, headers: Any) -> str:
    disposition = headers.get("Content-Disposition", "") if headers else ""
    match = re.search(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)\"?", disposition, re.IGNORECASE)
    name = urllib.parse.unquote(match.group(1)) if match else ""
    if not name:
        name = urllib.parse.unquote(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1])
    name = os.path.basename(name.replace("\\", "/")).strip().lstrip(".")
    return name or "model.safetensors"


def _plan_url(url: str, folder: Path, token: str | None) -> DownloadPlan:
    try:
        with urllib.request.urlopen(
            _request(url, token, Range="bytes=0-0"), timeout=STALL_SECONDS
        ) as response:
            headers = response.headers
            final_url = response.geturl()
            if headers.get("Content-Type", "").lower().startswith("text/html"):
                raise DownloadError(
                    f"{urllib.parse.urlparse(url).hostname} answered with a web page, not a "
                    "model file: use the file's download link (on CivitAI the Download "
                    "button's link; on Hugging Face a …/resolve/main/… link)."
                )
            total: int | None = None
            content_range = headers.get("Content-Range", "")
            if response.status == 206 and "/" in content_range:
                with contextlib.suppress(ValueError):
                    total = int(content_range.rsplit("/", 1)[1])
            elif headers.get("Content-Length"):
                with contextlib.suppress(ValueError):
                    total = int(headers["Content-Length"])
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _url_error(url, exc) from exc
    target = folder / _file_name(final_url, headers)
    if target.exists():
        raise DownloadError(f"{target} is already there; remove it first to download again.")
    part = _part(target)
    have = part.stat().st_size if part.exists() else 0
    to_fetch = max(0, total - have) if total is not None else None
    return DownloadPlan(url, False, target, total, to_fetch, (), token)


def _part(target: Path) -> Path:
    return target.with_name(target.name + ".part")


# ----------------------------------------------------------------------------- running


class _Meter:
    """Bytes done and speed over a sliding window; calls progress at most 10 times a
    second (and once at the end)."""

    def __init__(self, progress: Callable[[DownloadProgress], None], total: int | None) -> None:
        self.progress, self.total = progress, total
        self.done = 0
        self._samples: list[tuple[float, int]] = []
        self._reported = 0.0
        self._lock = threading.Lock()

    def add(self, n: int, force: bool = False) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            self._samples.append((now, self.done))
            while len(self._samples) > 2 and now - self._samples[0][0] > 3.0:
                self._samples.pop(0)
            if not force and now - self._reported < 0.1:
                return
            self._reported = now
            first_t, first_n = self._samples[0]
            speed = (self.done - first_n) / (now - first_t) if now > first_t else 0.0
            update = DownloadProgress(self.done, self.total, speed)
        self.progress(update)


class Download:
    """One download of a plan. `run()` blocks (call it from a worker thread);
    `cancel()` may be called from any thread and takes effect within a moment."""

    def __init__(self, plan: DownloadPlan) -> None:
        self.plan = plan
        self._cancelled = threading.Event()
        self._response: Any = None

    def cancel(self) -> None:
        self._cancelled.set()
        # Wake a read blocked on a slow server: shut the socket down under it.
        response = self._response
        sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def run(self, progress: Callable[[DownloadProgress], None]) -> Path:
        """Fetch the plan's files; the finished model's path. DownloadError or
        DownloadCancelled otherwise (a part stays for the next try)."""
        if self.plan.is_hub:
            return self._run_hub(progress)
        return self._run_url(progress)

    # ---- a file URL

    def _run_url(self, progress: Callable[[DownloadProgress], None]) -> Path:
        plan = self.plan
        target, part = plan.target, _part(plan.target)
        target.parent.mkdir(parents=True, exist_ok=True)
        meta_path = part.with_name(part.name + ".json")
        have = part.stat().st_size if part.exists() else 0
        validator = ""
        if have:
            with contextlib.suppress(OSError, ValueError):
                saved = json.loads(meta_path.read_text())
                if saved.get("url") == plan.source:
                    validator = str(saved.get("etag") or saved.get("last_modified") or "")
        meter = _Meter(progress, plan.total)
        headers = {"Range": f"bytes={have}-"} if have else {}
        if have and validator:
            headers["If-Range"] = validator
        try:
            response = urllib.request.urlopen(
                _request(plan.source, plan.token, **headers), timeout=STALL_SECONDS
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and plan.total is not None and have >= plan.total:
                return self._finish(part, target, meta_path, plan.total)
            raise _url_error(plan.source, exc) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise _url_error(plan.source, exc) from exc
        self._response = response
        try:
            total = plan.total
            if response.status == 206:
                mode = "ab"
                meter.add(have, force=True)
            else:  # the server sent the whole file (no ranges, or it changed): start over
                mode, have = "wb", 0
                with contextlib.suppress(ValueError, TypeError):
                    total = int(response.headers.get("Content-Length")) or total
            meter.total = total
            with contextlib.suppress(OSError):
                meta_path.write_text(
                    json.dumps(
                        {
                            "url": plan.source,
                            "etag": response.headers.get("ETag", ""),
                            "last_modified": response.headers.get("Last-Modified", ""),
                        }
                    )
                )
            with open(part, mode) as out:
                while True:
                    if self.cancelled:
                        raise DownloadCancelled()
                    try:
                        chunk = response.read1(CHUNK)
                    except (OSError, ValueError) as exc:
                        if self.cancelled:
                            raise DownloadCancelled() from exc
                        raise _url_error(plan.source, exc) from exc
                    if not chunk:
                        break
                    out.write(chunk)
                    meter.add(len(chunk))
            if self.cancelled:
                raise DownloadCancelled()
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                response.close()
        size = part.stat().st_size
        if total is not None and size < total:
            raise DownloadError(
                f"The connection to {urllib.parse.urlparse(plan.source).hostname} broke after "
                f"{format_bytes(size)} of {format_bytes(total)}; try again: the download goes on "
                "where it stopped."
            )
        meter.add(0, force=True)
        return self._finish(part, target, meta_path, size)

    def _finish(self, part: Path, target: Path, meta_path: Path, size: int) -> Path:
        os.replace(part, target)
        with contextlib.suppress(OSError):
            meta_path.unlink()
        return target

    # ---- a hub repo

    def _run_hub(self, progress: Callable[[DownloadProgress], None]) -> Path:
        from huggingface_hub import snapshot_download

        plan = self.plan
        meter = _Meter(progress, plan.total)
        already = plan.total - plan.to_fetch if plan.total and plan.to_fetch is not None else 0
        meter.add(already, force=True)
        try:
            folder = snapshot_download(
                plan.source,
                allow_patterns=list(plan.files),
                local_dir=plan.target,
                token=plan.token,
                endpoint=plan.endpoint,
                tqdm_class=self._bar_class(meter),
            )
        except DownloadCancelled:
            raise
        except Exception as exc:  # every hub failure becomes one sentence
            if self.cancelled:
                raise DownloadCancelled() from exc
            raise _hub_error(plan.source, exc) from exc
        if self.cancelled:
            raise DownloadCancelled()
        meter.add(0, force=True)
        return Path(folder)

    def _bar_class(self, meter: _Meter) -> type[tqdm]:
        download = self

        class BytesBar(tqdm):
            """Forwards the bytes-written bar to the meter; raises to cancel."""

            def __init__(self, *args: object, **kwargs: Any) -> None:
                kwargs.pop("name", None)
                kwargs["file"] = io.StringIO()
                kwargs["disable"] = False  # a disabled tqdm does not count
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                if download.cancelled:
                    raise DownloadCancelled()
                shown = super().update(n)
                # Only the bytes written; "Downloading bytes" counts compressed transfer.
                if self.unit == "B" and not str(self.desc).startswith("Downloading bytes") and n:
                    meter.add(int(n))
                return shown

        return BytesBar
