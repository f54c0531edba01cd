"""Build the desktop bundle: `python packaging/build.py`.

Makes dist/diffusiondesk/ (the PyInstaller one-folder bundle: the `diffusiondesk`
executable, the `diffusiondesk-cli` script that runs its CLI, install.sh and
uninstall.sh, and share/ with the .desktop entry, icon and AppStream metadata) and
dist/diffusiondesk-<version>-linux-<machine>.tar.gz of it. Needs the `bundle` extra
(`pip install -e '.[bundle]'`, which brings PyInstaller). Prints one JSON line with the
sizes and times.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
APP_ID = "io.github.diffusiondesk.DiffusionDesk"
NAME = "diffusiondesk"
SHARE_FILES = (f"{APP_ID}.desktop", f"{APP_ID}.svg", f"{APP_ID}.metainfo.xml")
SCRIPTS = ("install.sh", "uninstall.sh", f"{NAME}-cli")


@dataclass
class Built:
    bundle: str
    bundle_bytes: int
    tar_gz: str
    tar_gz_bytes: int
    pyinstaller_s: float
    tar_s: float


def version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under folder (links counted as links, not what they point to)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def run_pyinstaller(dist: Path, work: Path) -> float:
    if importlib.util.find_spec("PyInstaller") is None:
        raise SystemExit(
            "PyInstaller is not installed: run pip install -e '.[bundle]' and build again."
        )
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(dist),
            "--workpath",
            str(work),
            str(PACKAGING / "diffusiondesk.spec"),
        ],
        cwd=ROOT,
        check=True,
    )
    return time.perf_counter() - started


def finish_bundle(bundle: Path) -> None:
    """Beside the executable: the CLI script, the install scripts and the desktop files."""
    for script in SCRIPTS:
        target = bundle / script
        shutil.copyfile(PACKAGING / script, target)
        target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    share = bundle / "share"
    share.mkdir(exist_ok=True)
    for name in SHARE_FILES:
        shutil.copyfile(PACKAGING / name, share / name)


def make_tar_gz(bundle: Path, archive: Path) -> float:
    started = time.perf_counter()
    partial = archive.with_name(archive.name + ".part")
    with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=bundle.name)
    os.replace(partial, archive)
    return time.perf_counter() - started


def build(dist: Path = ROOT / "dist", work: Path = ROOT / "build" / "pyinstaller") -> Built:
    pyinstaller_s = run_pyinstaller(dist, work)
    bundle = dist / NAME
    finish_bundle(bundle)
    archive = dist / f"{NAME}-{version()}-linux-{platform.machine()}.tar.gz"
    tar_s = make_tar_gz(bundle, archive)
    return Built(
        bundle=str(bundle),
        bundle_bytes=folder_bytes(bundle),
        tar_gz=str(archive),
        tar_gz_bytes=archive.stat().st_size,
        pyinstaller_s=round(pyinstaller_s, 1),
        tar_s=round(tar_s, 1),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's work"
    )
    args = parser.parse_args(argv)
    if sys.platform != "linux":
        print("note: the install scripts are for Linux (XDG); the bundle itself is built anyway")
    print(json.dumps(asdict(build(args.dist, args.work))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
