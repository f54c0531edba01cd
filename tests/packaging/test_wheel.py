"""The built wheel and sdist carry everything the application needs at run time, and a
fresh virtual environment holding only the wheel (and torch) makes a picture offline with
the CLI and passes the window's smoke test.

Slow: it builds the packages, creates a virtual environment outside the source tree and
installs into it (pip's cache keeps the downloads to the first run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
TORCH = "torch==2.13.0"
STARTER_WEIGHTS = (
    "starter-model/unet/diffusion_pytorch_model.safetensors",
    "starter-model/vae/diffusion_pytorch_model.safetensors",
    "starter-model/text_encoder/model.safetensors",
    "starter-model/tokenizer/tokenizer.json",
    "starter-model/model_index.json",
)
RUNTIME_FILES = (
    *(f"diffusiondesk_resources/{name}" for name in STARTER_WEIGHTS),
    "diffusiondesk_resources/__init__.py",
    "diffusiondesk_resources/dark.qss",
    "diffusiondesk_resources/icons/app.svg",
    "engine/model_configs/clip_tokenizer/vocab.json",
    "engine/model_configs/clip_tokenizer/merges.txt",
    "engine/model_configs/sd1/unet/config.json",
    "engine/model_configs/sdxl/tokenizer_2/tokenizer_config.json",
    "engine/resources.py",
    "guiapp/app.py",
)

pytestmark = pytest.mark.slow


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900):
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    )
    return result


def _network_off_prefix() -> list[str]:
    """`unshare -rn` (a new network namespace with no interfaces) where the machine allows
    it; HF_HUB_OFFLINE=1 is set either way."""
    try:
        probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ["unshare", "-rn"] if probe.returncode == 0 else []


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built the way `python -m build` builds them (the wheel is
    built from the sdist, so a file the sdist forgets is missing from the wheel too)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=ROOT)
    [wheel] = out.glob("*.whl")
    [sdist] = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_the_wheel_carries_the_starter_model_icons_stylesheet_and_model_configs(
    built: dict[str, Path],
) -> None:
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    missing = [name for name in RUNTIME_FILES if name not in names]
    assert not missing, f"the wheel lacks {missing}"
    top_level = {name.split("/")[0] for name in names if not name.endswith(".dist-info/")}
    top_level = {name for name in top_level if not name.endswith(".dist-info")}
    assert top_level == {"engine", "guiapp", "server", "starter", "diffusiondesk_resources"}
    assert not [name for name in names if "__pycache__" in name or name.startswith("tests/")]


def test_the_sdist_carries_resources_where_they_are_in_the_repository(
    built: dict[str, Path],
) -> None:
    with tarfile.open(built["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    expected = ["setup.py", "pyproject.toml", "README.md", "resources/dark.qss"]
    expected += [f"resources/{name}" for name in STARTER_WEIGHTS]
    assert not [name for name in expected if name not in names]


def test_a_fresh_environment_with_only_the_wheel_makes_a_picture_offline_and_opens_the_window(
    built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    place = tmp_path_factory.mktemp("installed")  # outside the source tree
    assert ROOT not in place.parents
    venv = place / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=place)
    bin_dir = venv / "bin"
    pip_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    _run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", TORCH, str(built["wheel"])],
        cwd=place,
        env=pip_env,
        timeout=1800,
    )

    home = place / "home"
    home.mkdir()
    env = {
        **pip_env,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "QT_QPA_PLATFORM": "offscreen",
        "OMP_NUM_THREADS": "1",
    }
    offline = _network_off_prefix()

    where = _run(
        [
            str(bin_dir / "python"),
            "-c",
            "import engine, engine.resources as r; "
            "print(engine.__file__); print(r.starter_model_dir()); print(r.model_configs_dir())",
        ],
        cwd=place,
        env=env,
    ).stdout.split()
    site = venv / "lib"
    assert all(Path(p).is_relative_to(site) for p in where), where  # not the source tree

    picture = place / "x.png"
    _run(
        [
            *offline,
            str(bin_dir / "diffusiondesk-cli"),
            "generate",
            "--prompt",
            "a red circle on a blue background",
            "--steps",
            "8",
            "--seed",
            "1",
            "--quiet",
            "--output",
            str(picture),
        ],
        cwd=place,
        env=env,
    )
    with Image.open(picture) as image:
        assert image.size == (128, 128)
        assert "a red circle" in image.info.get("parameters", "")

    smoke = _run([*offline, str(bin_dir / "diffusiondesk"), "--smoke-test"], cwd=place, env=env)
    report = json.loads(smoke.stdout.strip().splitlines()[-1])
    assert report["smoke_test"] == "passed", report
    assert report["saved"] and report["picture_done_s"] >= report["engine_ready_s"]
    assert not (home / ".config" / "DiffusionDesk").exists()  # throw-away settings only
