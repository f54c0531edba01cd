"""The desktop bundle's install.sh, uninstall.sh and diffusiondesk-cli script, run on a
stand-in bundle (no PyInstaller needed), and the desktop files' validators."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packaging"))

import build as bundle_build  # noqa: E402 - packaging/build.py

APP_ID = bundle_build.APP_ID
DESKTOP = ROOT / "packaging" / f"{APP_ID}.desktop"
METAINFO = ROOT / "packaging" / f"{APP_ID}.metainfo.xml"


def _stand_in_bundle(parent: Path) -> Path:
    """A bundle folder whose executable prints how it was started."""
    bundle = parent / "diffusiondesk"
    bundle.mkdir(parents=True)
    executable = bundle / "diffusiondesk"
    executable.write_text('#!/bin/sh\necho "run=${DIFFUSIONDESK_RUN:-window} args=$*"\n')
    executable.chmod(0o755)
    bundle_build.finish_bundle(bundle)
    return bundle


def _sh(script: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    return subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60)


def _installed(home: Path) -> dict[str, Path]:
    data = home / ".local" / "share"
    return {
        "desktop": data / "applications" / f"{APP_ID}.desktop",
        "icon": data / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg",
        "metainfo": data / "metainfo" / f"{APP_ID}.metainfo.xml",
        "window": home / ".local" / "bin" / "diffusiondesk",
        "cli": home / ".local" / "bin" / "diffusiondesk-cli",
    }


def test_install_adds_the_menu_entry_icon_and_commands_for_a_folder_with_spaces(
    tmp_path: Path,
) -> None:
    bundle = _stand_in_bundle(tmp_path / "my programs")
    home = tmp_path / "home"
    result = _sh(bundle / "install.sh", home)
    assert result.returncode == 0, result.stderr

    paths = _installed(home)
    assert all(path.exists() for path in paths.values())
    entry = paths["desktop"].read_text()
    assert f'Exec="{bundle}/diffusiondesk" %F' in entry
    assert f"TryExec={bundle}/diffusiondesk\n" in entry
    if shutil.which("desktop-file-validate"):
        validated = subprocess.run(
            ["desktop-file-validate", str(paths["desktop"])], capture_output=True, text=True
        )
        assert validated.returncode == 0, validated.stdout + validated.stderr
    window = subprocess.run([str(paths["window"]), "x.png"], capture_output=True, text=True)
    assert window.stdout.strip() == "run=window args=x.png"


def test_the_cli_command_runs_the_bundles_executable_as_the_cli_through_links(
    tmp_path: Path,
) -> None:
    bundle = _stand_in_bundle(tmp_path)
    home = tmp_path / "home"
    assert _sh(bundle / "install.sh", home).returncode == 0
    cli = subprocess.run(
        [str(_installed(home)["cli"]), "generate", "--prompt", "a b"],
        capture_output=True,
        text=True,
    )
    assert cli.stdout.strip() == "run=cli args=generate --prompt a b"


def test_uninstall_takes_out_what_install_added_and_leaves_other_commands_alone(
    tmp_path: Path,
) -> None:
    bundle = _stand_in_bundle(tmp_path / "a")
    home = tmp_path / "home"
    assert _sh(bundle / "install.sh", home).returncode == 0
    other = tmp_path / "another-diffusiondesk-cli"
    other.write_text("#!/bin/sh\n")
    cli_link = _installed(home)["cli"]
    cli_link.unlink()
    cli_link.symlink_to(other)  # the person pointed the command elsewhere since

    result = _sh(bundle / "uninstall.sh", home)
    assert result.returncode == 0, result.stderr
    left = {name for name, path in _installed(home).items() if path.exists()}
    assert left == {"cli"} and cli_link.resolve() == other
    assert str(bundle) in result.stdout  # says which folder to delete


def test_install_refuses_a_folder_a_desktop_entry_cannot_name_in_one_sentence(
    tmp_path: Path,
) -> None:
    bundle = _stand_in_bundle(tmp_path / "cost$5")
    home = tmp_path / "home"
    result = _sh(bundle / "install.sh", home)
    assert result.returncode == 1
    assert "move the folder and run install.sh again" in result.stderr
    assert not (home / ".local").exists()


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="desktop-file-utils")
def test_the_desktop_entry_passes_desktop_file_validate() -> None:
    result = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout


@pytest.mark.skipif(not shutil.which("appstreamcli"), reason="appstream")
def test_the_appstream_metadata_passes_appstreamcli_validate() -> None:
    result = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(METAINFO)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
