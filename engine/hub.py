"""Downloading diffusers models from the Hugging Face hub, with progress and cancel."""

from __future__ import annotations

import io
import json
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from tqdm import tqdm

from engine import families
from engine.api import EngineError, ErrorKind, JobCancelled, Progress, ShouldCancel

# Only what a text-to-image pipeline needs, in safetensors (weights, and the index of
# sharded weights): no pickles, no EMA copies, no safety checker, no single-file copies
# at the repo root. Of fp16/bf16 variants, choose_files picks one set per component.
_WEIGHTS = (
    "text_encoder",
    "text_encoder_2",
    "text_encoder_3",
    "unet",
    "transformer",
    "vae",
    "taesd",
)
ALLOW_PATTERNS = [
    "model_index.json",
    "latent_rgb.json",
    "scheduler/*.json",
    "tokenizer/*",
    "tokenizer_2/*",
    "tokenizer_3/*",
    *(f"{c}/config.json" for c in _WEIGHTS),
    *(f"{c}/*.safetensors*" for c in _WEIGHTS),
]
IGNORE_PATTERNS = ["*.fp16.*", "*.bf16.*", "*non_ema*", "*.ema.*", "*.msgpack", "*.onnx*"]


def offline_message(repo_id: str) -> str:
    return (
        f"Can't reach the Hugging Face hub to download {repo_id}; connect to the internet "
        "or open a local model folder or .safetensors file."
    )


def _size(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def progress_bar_class(
    label: str, progress: Progress, should_cancel: ShouldCancel, total_bytes: int | None = None
) -> type[tqdm]:
    """A tqdm class for snapshot_download that forwards byte counts to progress().

    total_bytes, when known beforehand, is the size of everything to download: the hub's
    own byte bar only learns its total file by file, as parallel downloads start.
    """
    reported = [-1.0]

    class ForwardingBar(tqdm):
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()  # nothing on the console
            kwargs["disable"] = False  # a disabled tqdm does not count
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            # Runs on hub download threads; raising here aborts the download.
            if should_cancel():
                raise JobCancelled()
            shown = super().update(n)
            # Only the bytes-written bar: the network-transfer bar ("Downloading bytes")
            # counts compressed Xet traffic against an estimated total.
            if self.unit != "B" or str(self.desc).startswith("Downloading bytes"):
                return shown
            total = total_bytes or self.total
            if total:
                fraction = min(1.0, self.n / total)
                if fraction - reported[0] >= 0.005 or (fraction == 1.0 != reported[0]):
                    reported[0] = fraction
                    progress(f"downloading {label} ({_size(self.n)} of {_size(total)})", fraction)
            return shown

    return ForwardingBar


_VARIANTS = ("fp16", "bf16")


def _variant_of(name: str) -> str | None:
    return next((v for v in _VARIANTS if f".{v}." in name), None)


def choose_files(files: list[str], variant: str | None) -> list[str]:
    """Of a repo's files, those to fetch. Per component folder: the weights of the
    preferred variant (e.g. "fp16", half the bytes) when it has them, else the plain
    weights, else a variant that is there; everything that is not weights is kept."""
    weights: dict[str, dict[str | None, list[str]]] = {}
    chosen = []
    for f in files:
        folder, _, name = f.rpartition("/")
        if ".safetensors" in name:
            weights.setdefault(folder, {}).setdefault(_variant_of(name), []).append(f)
        else:
            chosen.append(f)
    for kinds in weights.values():
        for pick in (variant, None, *_VARIANTS):
            if pick in kinds:
                chosen += kinds[pick]
                break
    return sorted(chosen)


def _plan(
    repo_id: str, cache_dir: Path | None, variant: str | None
) -> tuple[list[str] | None, int | None]:
    """The files to fetch and how many bytes that is (0: all cached); (None, None) when
    the hub cannot tell (offline: the download itself then falls back to the cache)."""
    try:
        listing = snapshot_download(
            repo_id,
            allow_patterns=ALLOW_PATTERNS,
            ignore_patterns=[p for p in IGNORE_PATTERNS if p not in ("*.fp16.*", "*.bf16.*")],
            cache_dir=cache_dir,
            dry_run=True,
        )
    except Exception:  # the real download below reports errors properly
        return None, None
    files = choose_files([f.filename for f in listing], variant)
    keep = set(files)
    return files, sum(f.file_size or 0 for f in listing if f.will_download and f.filename in keep)


def download(
    repo_id: str,
    progress: Progress,
    should_cancel: ShouldCancel,
    cache_dir: Path | None = None,
    variant: str | None = None,
) -> Path:
    """Fetch (or find in the cache) what repo_id needs; return the local snapshot folder.

    variant: "fp16" to prefer half-precision weight files where the repo has them.
    """
    progress(f"looking up {repo_id} on the Hugging Face hub", -1.0)
    try:
        # model_index.json first: refuse unsupported pipelines before gigabytes move.
        index_dir = Path(
            snapshot_download(
                repo_id,
                allow_patterns=["model_index.json"],
                cache_dir=cache_dir,
                tqdm_class=progress_bar_class(repo_id, lambda s, f: None, should_cancel),
            )
        )
        check_supported(repo_id, index_dir / "model_index.json")
        if should_cancel():
            raise JobCancelled()
        files, total = _plan(repo_id, cache_dir, variant)
        if total:
            progress(f"downloading {repo_id} ({_size(total)})", 0.0)
        bar = progress_bar_class(repo_id, progress, should_cancel, total_bytes=total)
        folder = Path(
            snapshot_download(
                repo_id,
                allow_patterns=files if files is not None else ALLOW_PATTERNS,
                ignore_patterns=None if files is not None else IGNORE_PATTERNS,
                cache_dir=cache_dir,
                tqdm_class=bar,
            )
        )
    except (JobCancelled, EngineError):
        raise
    except GatedRepoError as exc:
        raise EngineError(
            ErrorKind.MODEL,
            f"{repo_id} is gated: accept its licence on huggingface.co and log in "
            "(hf auth login), or open a local copy.",
        ) from exc
    except RepositoryNotFoundError as exc:
        raise EngineError(
            ErrorKind.MODEL,
            f"There is no model {repo_id} on the Hugging Face hub (or it is private); "
            "check the name.",
        ) from exc
    except RevisionNotFoundError as exc:
        raise EngineError(ErrorKind.MODEL, f"{repo_id}: {exc}") from exc
    except LocalEntryNotFoundError as exc:
        # Raised when the hub cannot be reached (or HF_HUB_OFFLINE is set) and the files
        # are not in the local cache.
        raise EngineError(ErrorKind.MODEL, offline_message(repo_id)) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise EngineError(
            ErrorKind.MODEL, f"Downloading {repo_id} from the Hugging Face hub failed: {exc}"
        ) from exc
    return folder


def check_readable(repo_id: str, model_index: Path) -> None:
    """A clear message when a folder's model_index.json is missing or unreadable."""
    try:
        json.loads(model_index.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(
            ErrorKind.MODEL,
            f"{repo_id} is not a diffusers model (it has no readable model_index.json); "
            "open a diffusers model folder, hub id or .safetensors file.",
        ) from exc


def check_supported(repo_id: str, model_index: Path) -> None:
    """Refuse a folder or repo whose pipeline is no family DiffusionDesk runs, or that
    lacks a component its family needs, from model_index.json alone."""
    check_readable(repo_id, model_index)
    index = json.loads(model_index.read_text())
    if not isinstance(index, dict):
        raise EngineError(ErrorKind.MODEL, f"{repo_id}'s model_index.json is not a JSON object.")
    profile, _ = families.detect(families.FolderFacts(index, {}, repo_id), repo_id)
    check_components(repo_id, index, profile.components)


def check_components(repo_id: str, index: dict[str, object], required: tuple[str, ...]) -> None:
    """A clear message when a model folder lacks components its family needs."""
    missing = [c for c in required if not isinstance(index.get(c), list)]
    if missing:
        kind = index.get("_class_name", "an unknown pipeline")
        raise EngineError(
            ErrorKind.MODEL,
            f"{repo_id} is a {kind} without its {', '.join(missing)}; the folder is "
            "incomplete (download it again or choose another model).",
        )
