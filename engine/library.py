"""The model library: every model file in DiffusionDesk's own folder and in the folders a
person adds (an AUTOMATIC1111/Forge or ComfyUI `models/` tree is recognised by its
sub-folders), with its kind, family, size and last use.

A scan reads only what a folder listing gives (names, sizes, times), the bounded JSON
header of each .safetensors file and each diffusers folder's model_index.json; it never
reads weights and never unpickles anything. The scan is a generator of small messages
(`run_scan`), so the same code runs in place (`ModelLibrary.scan`, the CLI and tests)
and in a child process that feeds the window (engine/library_scan.py).

Two JSON files in the data folder, each written atomically:
- library.json: the person's choices (added folders, models removed from the list, last
  use times); small, written whenever one changes;
- library-index.json: what the last scan found; a cache that a scan rewrites and that
  lets the next scan skip the headers of files that did not change.

No Qt and no torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Any

from engine.api import STARTER_MODEL, EngineError
from engine.asset_folders import SUBFOLDERS, AssetKind, data_dir
from engine.atomic_file import atomic_write
from engine.checkpoint_keys import classify

STATE_FILE = "library.json"
INDEX_FILE = "library-index.json"
FORMAT_VERSION = 1
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
# Real checkpoints have headers of a few hundred kB; anything claiming more than this is
# damaged or hostile, and reading it would be the scan's slowest step.
HEADER_CAP = 8 * 1024 * 1024
MAX_DEPTH = 8
_SKIPPED_DIRS = {".git", "__pycache__", ".cache", ".locks"}

# model_index.json class names and the family they mean (SD 1.x and 2.x share theirs).
_PIPELINE_FAMILIES = {
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusionXLInpaintPipeline": "sdxl",
    "StableDiffusionPipeline": "sd1/sd2",
    "StableDiffusionInpaintPipeline": "sd1/sd2",
    "StableDiffusionImg2ImgPipeline": "sd1/sd2",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
    "Flux2KleinPipeline": "flux2",
    "QwenImagePipeline": "qwen_image",
}
# modelspec.architecture (the metadata Stability and kohya write) to family.
_ARCHITECTURES = (
    ("stable-diffusion-xl-v1-refiner", "sdxl-refiner"),
    ("stable-diffusion-xl", "sdxl"),
    ("stable-diffusion-v2", "sd2"),
    ("stable-diffusion-v1", "sd1"),
    ("stable-diffusion-3", "sd3"),
    ("flux", "flux"),
)


class LibraryError(Exception):
    """Something the person asked of the library that cannot be done; says what to change."""


@dataclass(frozen=True)
class ModelEntry:
    """One model file (or diffusers folder) the scan found."""

    path: str  # absolute
    name: str  # file stem or folder name
    kind: str  # an AssetKind value
    family: str  # "sd1", "sd2", "sdxl", "sd1/sd2", "sd3", "flux" ... or "" when unknown
    size: int  # bytes (a folder: all its files)
    mtime: float
    root: str  # the library folder it was found under
    problem: str = ""  # why its header could not be read, if it could not

    def as_row(self) -> tuple[Any, ...]:
        return astuple(self)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ModelEntry:
        path, name, kind, family, size, mtime, root, *rest = row
        return cls(
            str(path),
            str(name),
            str(kind),
            str(family),
            int(size),
            float(mtime),
            str(root),
            str(rest[0]) if rest else "",
        )

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)


# ----------------------------------------------------------------------------- headers


def read_safetensors_header(path: str | os.PathLike[str], cap: int = HEADER_CAP) -> dict:
    """The JSON header of a .safetensors file (8-byte little-endian length, then JSON),
    reading at most `cap` bytes of it. ValueError says why it could not be read."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError("the file is too short to be a .safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if length < 2:
            raise ValueError("its header is empty")
        if length > cap:
            raise ValueError(f"its header claims {length:,} bytes, more than any real model")
        raw = f.read(length)
    if len(raw) < length:
        raise ValueError("the file is truncated (its header ends early)")
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError("its header is not valid JSON") from exc
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    return header


def _split_header(header: Mapping[str, Any]) -> tuple[list[str], dict, dict[str, Any]]:
    metadata = header.get("__metadata__")
    metadata = metadata if isinstance(metadata, dict) else {}
    keys = [k for k in header if k != "__metadata__"]
    shapes: dict[str, list[int]] = {}
    for key in keys:
        info = header[key]
        shape = info.get("shape") if isinstance(info, dict) else None
        if isinstance(shape, list) and all(isinstance(n, int) for n in shape):
            shapes[key] = shape
    return keys, shapes, metadata


def _family_from_metadata(metadata: Mapping[str, Any]) -> str | None:
    architecture = str(metadata.get("modelspec.architecture", "")).lower()
    for prefix, family in _ARCHITECTURES:
        if architecture.startswith(prefix):
            return family
    return None


def inspect_file(path: str, kind_hint: str | None, root: str, stat: os.stat_result) -> ModelEntry:
    """An entry for one weight file: kind and family from its header when it is a
    .safetensors file, from the folder it sits in otherwise."""
    kind, family, problem = kind_hint, None, ""
    if path.lower().endswith((".safetensors", ".sft")):
        try:
            keys, shapes, metadata = _split_header(read_safetensors_header(path))
        except (OSError, ValueError) as exc:
            problem = str(exc)
        else:
            found_kind, family = classify(keys, shapes, metadata)
            family = _family_from_metadata(metadata) or family
            # The folder says what a person filed it as; the tensor names say what it is
            # (a LoRA in the checkpoints folder is still a LoRA).
            kind = found_kind or kind
    name = os.path.basename(path)
    return ModelEntry(
        path=path,
        name=os.path.splitext(name)[0],
        kind=kind or AssetKind.CHECKPOINT.value,
        family=family or "",
        size=stat.st_size,
        mtime=stat.st_mtime,
        root=root,
        problem=problem,
    )


def _folder_family(path: str, index: dict[str, Any]) -> str:
    """A diffusers folder's family as the loader will detect it (engine/families/, from
    its small JSON files), else from its pipeline's class name alone."""
    from engine import families

    try:
        facts = families.folder_facts(Path(path), index)
        profile, _ = families.detect(facts, path)
    except EngineError:
        return _PIPELINE_FAMILIES.get(str(index.get("_class_name", "")), "")
    if profile.family in ("sd1", "sd2") and "text_encoder" not in facts.configs:
        return "sd1/sd2"  # only the text encoder's width tells them apart
    return profile.family.value


def inspect_diffusers_folder(path: str, root: str, stat: os.stat_result) -> ModelEntry:
    """An entry for a diffusers model folder, from its model_index.json and file sizes."""
    family, problem = "", ""
    index_path = os.path.join(path, "model_index.json")
    try:
        with open(index_path, "rb") as f:
            index = json.loads(f.read(1_000_000))
        if not isinstance(index, dict):
            raise ValueError("model_index.json is not a JSON object")
        family = _folder_family(path, index)
    except (OSError, ValueError, RecursionError) as exc:
        problem = f"its model_index.json could not be read ({exc})"
    size = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(dirpath, name)).st_size
    return ModelEntry(
        path=path,
        name=os.path.basename(path.rstrip(os.sep)),
        kind=AssetKind.CHECKPOINT.value,
        family=family,
        size=size,
        mtime=stat.st_mtime,
        root=root,
        problem=problem,
    )


# ----------------------------------------------------------------------------- walking


def _kind_folders(root: Path) -> list[tuple[Path, str]]:
    """The sub-folders of root that name a kind (A1111/Forge, ComfyUI or our own layout).
    A root that is itself such a sub-folder, or a webui folder holding `models/`, counts."""
    found: list[tuple[Path, str]] = []
    bases = [root]
    if (root / "models").is_dir():
        bases.append(root / "models")
    for kind, names in SUBFOLDERS.items():
        if root.name in names:
            found.append((root, kind.value))
        for base in bases:
            for name in names:
                folder = (base / name).resolve() if ".." in name else base / name
                if folder.is_dir():
                    found.append((folder, kind.value))
    return found


def walk_folder(
    root: Path,
) -> Iterator[tuple[str, str | None, str, bool, os.stat_result]]:
    """(path, kind hint, root, is a diffusers folder, stat) for every model under root."""
    root_text = str(root)
    kind_folders = _kind_folders(root)
    seen: set[tuple[int, int]] = set()
    todo: list[tuple[str, str | None, int]] = [(str(p), kind, 0) for p, kind in kind_folders]
    # A recognised tree: only its loose files beside the kind folders; a plain folder: all.
    todo.append((root_text, None, MAX_DEPTH if kind_folders else 0))
    while todo:
        folder, kind, depth = todo.pop(0)
        try:
            info = os.stat(folder)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            with os.scandir(folder) as listing:
                items = sorted(listing, key=lambda e: e.name)
        except OSError:
            continue
        subfolders = []
        for item in items:
            if item.name.startswith("."):
                continue
            try:
                if item.is_dir():
                    if item.name in _SKIPPED_DIRS:
                        continue
                    if os.path.isfile(os.path.join(item.path, "model_index.json")):
                        yield item.path, kind, root_text, True, item.stat()
                    elif depth < MAX_DEPTH:
                        subfolders.append((item.path, kind, depth + 1))
                elif item.name.lower().endswith(MODEL_SUFFIXES) and item.is_file():
                    yield item.path, kind, root_text, False, item.stat()
            except OSError:
                continue
        todo[0:0] = subfolders


# ----------------------------------------------------------------------------- scanning

# Messages of a scan, in order: KNOWN batches (what the index already held), FOUND
# batches (new or changed files), GONE batches (paths no longer there), then DONE with
# a summary. A FAILED message ends a scan that could not run.
KNOWN, FOUND, GONE, DONE, FAILED = "known", "found", "gone", "done", "failed"
Message = tuple[str, Any]


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_scan(
    folders: Sequence[Path],
    index_path: Path,
    hidden: Iterable[str] = (),
    should_cancel: Callable[[], bool] = lambda: False,
    batch_size: int = 64,
) -> Iterator[Message]:
    """Scan folders, yielding small messages of entries as rows (tuples); rewrite the
    index at the end. Files whose size and time match the index keep their entry
    without their header being read again. A cancelled scan stops and keeps the old
    index."""
    started = time.monotonic()
    hidden = set(hidden)
    known = {e.path: e for e in load_index(index_path) if e.path not in hidden}
    roots = [str(f) for f in folders]
    in_roots = [e for e in known.values() if e.root in roots]
    yield from ((KNOWN, [e.as_row() for e in b]) for b in _batches(in_roots, batch_size))

    found: dict[str, ModelEntry] = {}
    pending: list[ModelEntry] = []
    files = read = 0
    for root in folders:
        for path, kind, root_text, is_folder, stat in walk_folder(Path(root)):
            if should_cancel():
                return
            files += 1
            if path in hidden or path in found:
                continue
            old = known.get(path)
            # A diffusers folder's size is its files' total: its own time stands for it.
            unchanged = (
                old and old.mtime == stat.st_mtime and (is_folder or old.size == stat.st_size)
            )
            if old and unchanged:
                found[path] = old if old.root == root_text else replace(old, root=root_text)
                continue
            read += 1
            entry = (
                inspect_diffusers_folder(path, root_text, stat)
                if is_folder
                else inspect_file(path, kind, root_text, stat)
            )
            found[path] = entry
            if entry != old:
                pending.append(entry)
            if len(pending) >= batch_size:
                yield FOUND, [e.as_row() for e in pending]
                pending = []
    if pending:
        yield FOUND, [e.as_row() for e in pending]
    gone = [p for p in known if p not in found and known[p].root in roots]
    yield from ((GONE, b) for b in _batches(gone, batch_size * 4))
    # Entries of folders not scanned now (removed from the library) leave the index too.
    save_index(index_path, found.values())
    yield (
        DONE,
        {
            "files": files,
            "headers_read": read,
            "models": len(found),
            "gone": len(gone),
            "seconds": time.monotonic() - started,
        },
    )


# ----------------------------------------------------------------------------- storage


def atomic_write_json(path: Path, value: Any) -> None:
    """Write JSON to path so that it holds either the old or the complete new text."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


class _Unreadable:
    """What _read_json returns for a file that is there but cannot be read as JSON."""


UNREADABLE = _Unreadable()


def _read_json(path: Path) -> Any:
    """The JSON in path; None when there is no file; UNREADABLE when it is damaged."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError):
        return UNREADABLE


def load_index(path: Path) -> list[ModelEntry]:
    """The entries the last scan stored; [] when there is no readable index (a scan
    then simply reads every header again)."""
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        return []
    entries = []
    rows = data.get("entries")
    for row in rows if isinstance(rows, list) else []:
        with contextlib.suppress(TypeError, ValueError):
            entries.append(ModelEntry.from_row(row))
    return entries


def save_index(path: Path, entries: Iterable[ModelEntry]) -> None:
    atomic_write_json(path, {"version": FORMAT_VERSION, "entries": [e.as_row() for e in entries]})


# ----------------------------------------------------------------------------- the library


class ModelLibrary:
    """The person's model folders and the models in them.

    Entries come from the index (`load`), a scan in place (`scan`) or a background scan
    whose messages the caller hands to `apply`. Folder, removal and last-use changes are
    saved at once.
    """

    def __init__(self, data_folder: Path | None = None) -> None:
        self.data_folder = Path(data_folder) if data_folder is not None else data_dir()
        self.own_folder = self.data_folder / "models"
        self.state_path = self.data_folder / STATE_FILE
        self.index_path = self.data_folder / INDEX_FILE
        self._added: list[Path] = []
        self._hidden: set[str] = set()
        self._last_used: dict[str, float] = {}
        self._entries: dict[str, ModelEntry] = {}
        self.notice = ""  # one sentence about a damaged state file, shown once
        self._load_state()

    # ---- state

    def _load_state(self) -> None:
        data = _read_json(self.state_path)
        if data is None:
            return
        if not isinstance(data, dict):  # damaged, or JSON of another shape
            self._set_aside()
            return
        folders = data.get("folders")
        for folder in folders if isinstance(folders, list) else []:
            if isinstance(folder, str) and folder and "\x00" not in folder:
                self._added.append(Path(folder))
        hidden = data.get("hidden")
        self._hidden = (
            {p for p in hidden if isinstance(p, str)} if isinstance(hidden, list) else set()
        )
        used = data.get("last_used")
        if isinstance(used, dict):
            for path, when in used.items():
                if isinstance(when, int | float) and not isinstance(when, bool) and when == when:
                    self._last_used[str(path)] = float(when)

    def _set_aside(self) -> None:
        target = self.state_path.with_name(f"{STATE_FILE}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        with contextlib.suppress(OSError):
            self.state_path.replace(target)
        self.notice = (
            f"The model library's list ({self.state_path}) was damaged; it was set aside as "
            f"{target.name} and the library starts afresh (add your folders again)."
        )

    def save(self) -> None:
        atomic_write_json(
            self.state_path,
            {
                "version": FORMAT_VERSION,
                "folders": [str(f) for f in self._added],
                "hidden": sorted(self._hidden),
                "last_used": self._last_used,
            },
        )

    # ---- folders

    def folders(self) -> list[Path]:
        """Our own models folder first, then the added folders in the order added."""
        return [self.own_folder, *self._added]

    def added_folders(self) -> list[Path]:
        return list(self._added)

    def add_folder(self, folder: str | os.PathLike[str]) -> Path:
        """Add a folder to scan; LibraryError says why it cannot be added."""
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise LibraryError(f"{path} is not a folder; choose a folder that holds models.")
        path = path.resolve()
        if path in self.folders():
            raise LibraryError(f"{path} is already in the library.")
        self._added.append(path)
        self.save()
        return path

    def remove_folder(self, folder: str | os.PathLike[str]) -> None:
        path = Path(folder)
        self._added = [f for f in self._added if f != path]
        root = str(path)
        self._entries = {p: e for p, e in self._entries.items() if e.root != root}
        self.save()

    # ---- entries

    def load(self) -> list[ModelEntry]:
        """Fill the library from the index the last scan wrote (no folder is read)."""
        roots = {str(f) for f in self.folders()}
        self._entries = {e.path: e for e in load_index(self.index_path) if e.root in roots}
        return self.entries()

    def entries(self) -> list[ModelEntry]:
        return [e for p, e in self._entries.items() if p not in self._hidden]

    def entry(self, path: str) -> ModelEntry | None:
        return None if path in self._hidden else self._entries.get(path)

    def find(self, name: str, kind: str | None = None) -> ModelEntry | None:
        """The entry whose path, file name or name (any case) is `name`; of several, the
        most recently used."""
        wanted = name.strip().casefold()
        if not wanted:
            return None
        matches = [
            e
            for e in self.entries()
            if (kind is None or e.kind == kind)
            and wanted
            in (e.path.casefold(), e.name.casefold(), os.path.basename(e.path).casefold())
        ]
        matches.sort(key=lambda e: -(self.last_used(e.path) or 0.0))
        return matches[0] if matches else None

    def remove_from_list(self, path: str) -> None:
        """Hide a model from the list (the file stays on disk; a scan does not bring it
        back)."""
        self._hidden.add(path)
        self._entries.pop(path, None)
        self.save()

    def hidden(self) -> set[str]:
        return set(self._hidden)

    def last_used(self, path: str) -> float | None:
        return self._last_used.get(path)

    def mark_used(self, path: str, when: float | None = None) -> None:
        self._last_used[path] = time.time() if when is None else when
        self.save()

    # ---- scanning

    def apply(self, message: Message) -> list[ModelEntry] | list[str] | dict:
        """Take one scan message into the list; returns its entries (or gone paths)."""
        kind, payload = message
        if kind in (KNOWN, FOUND):
            entries = [ModelEntry.from_row(row) for row in payload]
            for e in entries:
                if e.path not in self._hidden:
                    self._entries[e.path] = e
            return entries
        if kind == GONE:
            for path in payload:
                self._entries.pop(path, None)
            return list(payload)
        return payload

    def scan(self, should_cancel: Callable[[], bool] = lambda: False) -> dict:
        """Scan every folder here and now (the window scans in a child process instead);
        returns the summary (files, headers read, models, gone, seconds)."""
        summary: dict = {}
        for message in run_scan(self.folders(), self.index_path, self._hidden, should_cancel):
            result = self.apply(message)
            if message[0] == DONE:
                summary = dict(result)  # type: ignore[arg-type]
        return summary


def resolve_model_name(name: str, library: ModelLibrary | None = None) -> str | None:
    """What the form's model box should hold for a model name another tool wrote
    ("dreamshaper_8", "sdxl/juggernautXL.safetensors", "starter"): the library's path of
    that checkpoint, or None when the library does not have it. Reads the index only."""
    name = name.strip()
    if not name or "\x00" in name:
        return None
    if name == STARTER_MODEL:
        return name
    if os.path.isabs(name) and os.path.exists(name):
        return name
    library = library or ModelLibrary()
    if not library.entries():
        library.load()
    file_name = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem = (
        os.path.splitext(file_name)[0] if file_name.lower().endswith(MODEL_SUFFIXES) else file_name
    )
    for wanted in (file_name, stem):
        entry = library.find(wanted, kind=AssetKind.CHECKPOINT.value)
        if entry is not None:
            return entry.path
    return None
