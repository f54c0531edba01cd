"""File hashes as AUTOMATIC1111 writes them into a PNG's parameters (no torch here).

- LoRA (`Lora hashes`): the "addnet" hash kohya's sd-scripts defined: sha256 of a
  .safetensors file after its header (the 8-byte length and the JSON it counts), first
  12 hex digits (A1111 `network.shorthash`).
- Textual inversion (`TI hashes`): sha256 of the whole file, first 12 hex digits
  (A1111 `Embedding.shorthash`).
- VAE (`VAE hash`): sha256 of the whole file, first 10 hex digits
  (A1111 `sd_vae.get_loaded_vae_hash`).

Hashes are cached per file (path, size, modification time), so a 150 MB LoRA is read
once per session.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_BLOCK = 1 << 20
_cache: dict[tuple[str, int, int, bool], str] = {}
_lock = threading.Lock()


def _digest(path: Path, skip_header: bool) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, skip_header)
    with _lock:
        if key in _cache:
            return _cache[key]
    sha = hashlib.sha256()
    with path.open("rb") as f:
        if skip_header:
            length = int.from_bytes(f.read(8), "little")
            f.seek(length + 8)
        for block in iter(lambda: f.read(_BLOCK), b""):
            sha.update(block)
    digest = sha.hexdigest()
    with _lock:
        _cache[key] = digest
    return digest


def lora_hash(path: Path) -> str:
    """A1111's LoRA short hash (addnet hash for .safetensors, first 12 hex digits)."""
    return _digest(path, path.suffix.lower() == ".safetensors")[:12]


def embedding_hash(path: Path) -> str:
    return _digest(path, False)[:12]


def vae_hash(path: Path) -> str:
    return _digest(path, False)[:10]


def format_hashes(hashes: dict[str, str]) -> str:
    """ "name: hash, name: hash" with the separators taken out of names, as A1111 does."""
    return ", ".join(
        f"{name.replace(':', '').replace(',', '')}: {value}" for name, value in hashes.items()
    )


def parse_hashes(text: str) -> dict[str, str]:
    """The inverse of format_hashes; malformed parts are skipped."""
    found: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.rpartition(":")
        if sep and name.strip() and value.strip():
            found[name.strip()] = value.strip()
    return found
