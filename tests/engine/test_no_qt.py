"""engine/ never imports Qt: importing every engine module pulls in no Qt module."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import engine

CODE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
banned = ("PySide6", "shiboken6", "PyQt5", "PyQt6", "guiapp")
qt = sorted(m for m in sys.modules if m.split(".")[0] in banned)
print(",".join(qt))
sys.exit(1 if qt else 0)
"""


def test_engine_imports_no_qt():
    root = Path(engine.__file__).parent
    names = ["engine"] + [
        f"engine.{m.name}" for m in pkgutil.iter_modules([str(root)]) if not m.name.startswith("_")
    ]
    assert {"engine.worker", "engine.sampling", "engine.plan", "engine.compositing"} <= set(names)
    done = subprocess.run(
        [sys.executable, "-c", CODE, *names],
        cwd=root.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compositing_and_validation_import_no_torch():
    """The window may composite-check or validate without pulling in torch."""
    code = (
        "import sys, engine.compositing, engine.validation, engine.api; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(engine.__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
