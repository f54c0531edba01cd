"""engine/resources.py finds the application's files in a source checkout and, through
importlib.resources, in an installed layout; a zip install gets one clear sentence."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import engine.resources as resources

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import engine.resources as r\n"
    "try:\n"
    "    print(r.starter_model_dir()); print(r.icons_dir()); print(r.stylesheet_path());"
    " print(r.model_configs_dir())\n"
    "except r.ResourcesMissing as exc:\n"
    "    print('MISSING', exc)\n"
)


def _installed_layout(site: Path) -> None:
    """engine/ and diffusiondesk_resources/ side by side, as a wheel installs them.

    The probe runs with -S so that an editable install of the checkout (its import hook
    lives in site-packages) cannot supply the package the test removed.
    """
    (site / "engine" / "model_configs" / "sd1").mkdir(parents=True)
    (site / "engine" / "__init__.py").write_text("")
    shutil.copy(ROOT / "engine" / "resources.py", site / "engine" / "resources.py")
    (site / "diffusiondesk_resources" / "starter-model").mkdir(parents=True)
    (site / "diffusiondesk_resources" / "__init__.py").write_text("")


def _probe(path_entry: Path, cwd: Path) -> list[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(path_entry)!r})\n" + PROBE,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def test_a_source_checkout_uses_the_resources_folder_beside_engine() -> None:
    assert resources.resources_dir() == ROOT / "resources"
    assert (resources.starter_model_dir() / "model_index.json").is_file()
    assert (resources.icons_dir() / "app.svg").is_file()
    assert resources.stylesheet_path().is_file()
    assert (resources.model_configs_dir() / "clip_tokenizer" / "vocab.json").is_file()


def test_an_installed_layout_is_found_through_importlib_resources(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    _installed_layout(site)
    lines = _probe(site, tmp_path)
    assert lines == [
        str(site / "diffusiondesk_resources" / "starter-model"),
        str(site / "diffusiondesk_resources" / "icons"),
        str(site / "diffusiondesk_resources" / "dark.qss"),
        str(site / "engine" / "model_configs"),
    ]


def test_an_install_without_the_resources_package_says_to_reinstall(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    _installed_layout(site)
    shutil.rmtree(site / "diffusiondesk_resources")
    [line] = _probe(site, tmp_path)
    assert line.startswith("MISSING") and "reinstall DiffusionDesk" in line


def test_a_zipped_install_is_refused_with_one_clear_sentence(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    _installed_layout(site)
    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in site.rglob("*"):
            zipped.write(path, path.relative_to(site).as_posix())
    [line] = _probe(archive, tmp_path)
    assert line.startswith("MISSING") and "zip archive" in line and "reinstall" in line
