"""The one way DiffusionDesk writes a file: atomically, with a sentence when it cannot.

`atomic_write` writes into a temporary file beside the target, flushes it to disk and
renames it over the target with os.replace, so the target is either the old file or
the complete new one: a full disk, a read-only folder or a crash never leaves half a
PNG behind. `SaveError` carries one sentence saying what happened and what to do.
No torch and no Qt here: the window and the CLI both use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from engine.api import EngineError, ErrorKind

TEMP_SUFFIX = ".part"


class SaveError(EngineError, OSError):
    """A file could not be written; the message says why and what to do. An OSError too,
    so callers that only knew the disk's errors keep working."""

    def __init__(self, message: str, error_number: int | None = None) -> None:
        super().__init__(ErrorKind.BAD_INPUT, message)
        self.errno = error_number


def describe_os_error(exc: OSError, path: Path) -> str:
    """One sentence for a failed write of path: what happened and what to do."""
    folder = path.parent
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"The disk holding {folder} is full, so {path.name} was not saved; free some "
            "space or choose another output folder."
        )
    if code == errno.EROFS:
        return (
            f"{folder} is on a read-only disk, so {path.name} was not saved; choose another "
            "output folder."
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"DiffusionDesk may not write into {folder} (permission denied), so {path.name} "
            "was not saved; choose another output folder or change the folder's permissions."
        )
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ESTALE):
        return (
            f"The folder {folder} is gone (a removed disk or network drive?), so {path.name} "
            "was not saved; reconnect it or choose another output folder."
        )
    if code == errno.ENOTDIR:
        return (
            f"{folder} is not a folder (part of that path is a file), so {path.name} was not "
            "saved; choose another output folder."
        )
    if code == errno.EISDIR:
        return f"{path} is a folder, so the image was not saved there; choose a file name."
    if code == errno.ENAMETOOLONG:
        return f"The name {path} is too long for the disk; choose a shorter folder or name."
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{path.name} could not be saved in {folder} ({reason}); choose another folder."


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Create path's folder if needed and write it through write(file), atomically.

    Raises SaveError (with the OSError as its cause) when the disk refuses; nothing is
    left behind then, neither a partial target nor the temporary file.
    """
    path = Path(path)
    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.stem[:64]}-", suffix=TEMP_SUFFIX, dir=path.parent
        )
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise SaveError(describe_os_error(exc, path), exc.errno) from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))
