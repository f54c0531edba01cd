"""T2I adapters in the ControlNet dock: "Add unit" takes an adapter as it takes a
ControlNet, names which one it is, the window makes a picture with it, and Reuse
parameters puts the unit back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from PySide6.QtCore import Qt
from safetensors.numpy import save_file


def adapter_file(path: Path) -> Path:
    """A file with a T2I adapter's tensor names (the dock reads only the header)."""
    save_file(
        {
            "adapter.conv_in.weight": np.zeros((8, 768, 3, 3), np.float32),
            "adapter.body.0.resnets.0.block1.weight": np.zeros((8, 8, 3, 3), np.float32),
        },
        str(path),
    )
    return path


def controlnet_folder(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    return path


def test_add_unit_takes_an_adapter_and_names_it(qtbot, window, fake_engine, tmp_path):
    window.workspace.put_picture(Image.new("RGB", (64, 48), (90, 120, 200)))
    dock = window.control_dock
    qtbot.mouseClick(dock.add_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(dock.add_button, Qt.MouseButton.LeftButton)
    adapter_unit, net_unit = dock.units
    adapter = adapter_file(tmp_path / "t2iadapter_sketch_sd14v1.safetensors")
    adapter_unit.model.setText(str(adapter))
    adapter_unit.weight.setValue(0.7)
    adapter_unit.end.setValue(0.5)
    net_unit.model.setText(str(controlnet_folder(tmp_path / "canny")))
    assert adapter_unit.kind.text() == "T2I adapter"
    assert net_unit.kind.text() == "ControlNet"
    net_unit.model.setText("a name the engine looks up")
    assert net_unit.kind.text() == ""
    window.form.width, window.form.height = 64, 48
    assert window.workspace.generate() is not None
    qtbot.waitUntil(lambda: len(fake_engine.submitted) == 1)
    units = fake_engine.submitted[0].controls
    assert units[0].model == str(adapter)
    assert (units[0].weight, units[0].start, units[0].end) == (0.7, 0.0, 0.5)
    assert units[0].image.size == (64, 48)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny model and a tiny adapter that fits it (built before the leak check starts)."""
    from adapter_helpers import save_tiny_adapter
    from tiny_models import save_tiny_model

    root = tmp_path_factory.mktemp("adapter-window")
    return save_tiny_model(root / "model"), save_tiny_adapter(root / "t2iadapter_tiny")


@pytest.mark.slow
def test_the_window_makes_a_picture_with_an_adapter_unit(qtbot, make_window, tiny_files, tmp_path):
    from engine.worker import Engine

    model, adapter = tiny_files
    window = make_window(Engine(device="cpu"))
    window.form.model = str(model)
    window.form.width = window.form.height = 64
    window.form.steps = 3
    window.form.random_seed = False
    window.form.seed = 5
    sketch = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(sketch).ellipse((12, 12, 52, 52), outline="white", width=4)
    sketch.save(tmp_path / "sketch.png")
    unit = window.control_dock.add_unit()
    unit.model.setText(str(adapter))
    unit.source.setCurrentText("File")
    unit.image_path.setText(str(tmp_path / "sketch.png"))
    unit.weight.setValue(0.8)
    unit.end.setValue(0.6)
    assert unit.kind.text() == "T2I adapter"
    qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 1, timeout=120000)
    assert window.error_area.message() == ""
    assert window.canvas.previews_shown >= 1
    first = window.workspace.history.entries()[0]
    with Image.open(first.path) as picture:
        text = picture.info["parameters"]
        made = np.asarray(picture.convert("RGB"))
    assert 'ControlNet 0: "Module: none, Model: t2iadapter_tiny, Weight: 0.8' in text
    # Reuse parameters puts the adapter unit back, and it makes the same picture again.
    window.control_dock.remove_unit(unit)
    window.workspace.reuse_parameters(first)
    (back,) = window.control_dock.units
    assert back.model.text() == str(adapter) and back.kind.text() == "T2I adapter"
    assert (back.weight.value(), back.end.value()) == (0.8, 0.6)
    assert back.image_path.text() == str(tmp_path / "sketch.png")
    qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.workspace.history.entries()) == 2, timeout=120000)
    second = next(e for e in window.workspace.history.entries() if e.path != first.path)
    with Image.open(second.path) as picture:
        np.testing.assert_array_equal(np.asarray(picture.convert("RGB")), made)
