"""Check the desktop bundle end to end: `python packaging/check_bundle.py`.

1. Builds it (packaging/build.py), unless --skip-build reuses dist/.
2. Unpacks the .tar.gz into a scratch folder and runs its install.sh for a scratch HOME;
   the installed .desktop entry must pass desktop-file-validate.
3. With no network (`unshare -rn` where the machine allows it; HF_HUB_OFFLINE=1 always)
   makes one picture with the installed `diffusiondesk-cli` and the starter model, and
   runs the window's `--smoke-test` under Xvfb (xvfb-run), which must exit 0.
4. Runs uninstall.sh and checks that the menu entry, icon and commands are gone.

Prints ONE JSON line: sizes, build and tar times, the start-up times of the window
(shown, engine ready, picture done, from the moment the process was started) and the
CLI's time. Exits 1, with the reason, when any step fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build as bundle_build

APP_ID = bundle_build.APP_ID
PROMPT = "a red circle on a blue background"


class CheckFailed(Exception):
    pass


def run(command: list[str], env: dict[str, str], timeout: float, what: str) -> str:
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise CheckFailed(
            f"{what} exited {result.returncode}: {' '.join(command)}\n"
            f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
        )
    return result.stdout


def network_off() -> tuple[list[str], str]:
    """The command prefix that takes the network away, and how it was done."""
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["unshare", "-rn"], "unshare -rn (no network interfaces)"
        reason = probe.stderr.decode(errors="replace").strip() or "refused"
        return [], f"HF_HUB_OFFLINE=1 only: unshare -rn failed here ({reason})"
    return [], "HF_HUB_OFFLINE=1 only: unshare is not installed"


def unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="tar")
    return into / bundle_build.NAME


def installed_paths(home: Path) -> dict[str, Path]:
    data = home / ".local" / "share"
    return {
        "desktop": data / "applications" / f"{APP_ID}.desktop",
        "icon": data / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg",
        "metainfo": data / "metainfo" / f"{APP_ID}.metainfo.xml",
        "window": home / ".local" / "bin" / "diffusiondesk",
        "cli": home / ".local" / "bin" / "diffusiondesk-cli",
    }


def check_install(bundle: Path, env: dict[str, str], home: Path) -> dict[str, Path]:
    run(["sh", str(bundle / "install.sh")], env, 120, "install.sh")
    paths = installed_paths(home)
    missing = [name for name, path in paths.items() if not path.exists()]
    if missing:
        raise CheckFailed(f"install.sh did not install {missing}")
    if shutil.which("desktop-file-validate"):
        run(["desktop-file-validate", str(paths["desktop"])], env, 60, "desktop-file-validate")
    exec_line = next(
        line for line in paths["desktop"].read_text().splitlines() if line.startswith("Exec=")
    )
    if str(bundle / "diffusiondesk") not in exec_line:
        raise CheckFailed(f"the installed entry does not start this bundle: {exec_line}")
    return paths


def cli_picture(cli: Path, offline: list[str], env: dict[str, str], out: Path) -> float:
    started = time.perf_counter()
    run(
        [*offline, str(cli), "generate", "--prompt", PROMPT, "--steps", "8", "--seed", "1",
         "--quiet", "--output", str(out)],
        env, 900, "the bundled CLI",
    )  # fmt: skip
    seconds = time.perf_counter() - started
    from PIL import Image

    with Image.open(out) as image:
        if image.size != (128, 128) or PROMPT not in image.info.get("parameters", ""):
            raise CheckFailed(f"the CLI's picture is wrong: {image.size}, {image.info}")
    return seconds


def window_smoke_test(window: Path, offline: list[str], env: dict[str, str]) -> dict:
    if not shutil.which("xvfb-run"):
        raise CheckFailed("xvfb-run is not installed (Debian: apt-get install xvfb xauth)")
    # `date` runs in the same process just before exec, so the app's wall-clock marks
    # minus this one are its start-up times (xvfb-run's own wait is not counted).
    script = 'date +%s.%N; exec "$0" --smoke-test'
    out = run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x900x24", *offline, "sh", "-c", script,
         str(window)],
        {**env, "QT_QPA_PLATFORM": "xcb"}, 900, "the window's smoke test",
    )  # fmt: skip
    lines = out.strip().splitlines()
    launched = float(lines[0])
    report = json.loads(lines[-1])
    if report.get("smoke_test") != "passed":
        raise CheckFailed(f"the window's smoke test failed: {report}")
    return {
        stage: round(report[f"{stage}_at"] - launched, 2)
        for stage in ("window_shown", "engine_ready", "picture_done")
    } | {"device": report["device"]}


def check_uninstall(bundle: Path, env: dict[str, str], home: Path) -> None:
    run(["sh", str(bundle / "uninstall.sh")], env, 120, "uninstall.sh")
    left = [str(p) for p in installed_paths(home).values() if p.exists() or p.is_symlink()]
    if left:
        raise CheckFailed(f"uninstall.sh left {left}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-build", action="store_true", help="check the bundle in dist/")
    parser.add_argument("--dist", type=Path, default=bundle_build.ROOT / "dist")
    args = parser.parse_args(argv)
    result: dict = {}
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="diffusiondesk-bundle-check-"))
    try:
        if args.skip_build:
            [archive] = args.dist.glob(f"{bundle_build.NAME}-*.tar.gz")
            result |= {"build_s": None}
        else:
            built = bundle_build.build(args.dist)
            archive = Path(built.tar_gz)
            result |= {"build_s": round(built.pyinstaller_s + built.tar_s, 1)}
            result |= {"pyinstaller_s": built.pyinstaller_s, "tar_s": built.tar_s}
        result["tar_gz_bytes"] = archive.stat().st_size
        bundle = unpack(archive, scratch / "unpacked with space")
        result["bundle_bytes"] = bundle_build.folder_bytes(bundle)

        home = scratch / "home"
        home.mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        }
        paths = check_install(bundle, env, home)
        offline, result["network"] = network_off()
        result["cli_picture_s"] = round(
            cli_picture(paths["cli"], offline, env, scratch / "cli.png"), 2
        )
        result["startup_s"] = window_smoke_test(paths["window"], offline, env)
        check_uninstall(bundle, env, home)
        result["check"] = "passed"
    except (CheckFailed, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        result |= {"check": "failed", "reason": str(exc)[-4000:]}
    finally:
        result["total_s"] = round(time.perf_counter() - started, 1)
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0 if result["check"] == "passed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
