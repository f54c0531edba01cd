"""Take the README's ControlNet and Regions screenshots of the real window and engine.

Run under a real X server (Xvfb), not the offscreen platform:
    xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb \
        python docs/make_control_screenshots.py
Writes docs/screenshot-regions.png (a red circle region on the left, a blue square
region on the right, after the run) and docs/screenshot-controlnet.png (a soft-edge unit's
map shown over the canvas). The starter model ships no ControlNet, so the unit uses
one made from the starter UNet with diffusers' ControlNetModel.from_unet (untrained:
its output convolutions are zero, so it does not change the picture; the screenshot
shows the dock and the map layer).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "docs"), str(ROOT / "tests")]

from make_screenshots import grab, open_window, settle, wait_until  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.api import STARTER_MODEL  # noqa: E402
from guiapp.window import MainWindow  # noqa: E402


def starter_controlnet(folder: Path) -> Path:
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(ROOT / "resources/starter-model/unet"))
    ControlNetModel.from_unet(unet).save_pretrained(folder)
    return folder


def run(app: QApplication, window: MainWindow) -> None:
    """Generate with the form and the docks, and wait until the job has ended."""
    job_id = window.workspace.generate()
    assert job_id is not None, window.workspace.error
    wait_until(app, lambda: (job := window.workspace.jobs.find(job_id)) is not None and job.ended)
    settle(app, 1.0)


def main() -> None:
    app, window = open_window(STARTER_MODEL, 12, "on a white background", dtype="float32")
    m = window.form
    m.seed = 1
    window.addons_dock.parent().hide()
    window.queue_dock.hide()
    settle(app, 1.0)

    # 1. Regions: left and right halves with their own prompts, after the run.
    window.regions_dock.parent().show()
    window.resizeDocks([window.regions_dock.parent()], [460], Qt.Orientation.Horizontal)
    wait_until(app, lambda: window.workspace.bridge.ready)
    run(app, window)  # a first picture, so the layers have its size
    left, right = window.regions_dock.add_region(), window.regions_dock.add_region()
    left.prompt.setText("a red circle")
    right.prompt.setText("a blue square")
    left.layer.fill_box(0.0, 0.0, 0.5, 1.0)
    right.layer.fill_box(0.5, 0.0, 1.0, 1.0)
    run(app, window)
    window.canvas.fit()
    settle(app)
    grab(window, "screenshot-regions.png")

    # 2. ControlNet: a canny unit on the canvas picture, its map shown as a layer.
    for row in list(window.regions_dock.rows):
        window.regions_dock.remove_region(row)
    window.regions_dock.parent().hide()
    window.control_dock.parent().show()
    window.resizeDocks([window.control_dock.parent()], [460], Qt.Orientation.Horizontal)
    unit = window.control_dock.add_unit()
    unit.model.setText(str(starter_controlnet(Path(tempfile.mkdtemp()) / "controlnet")))
    unit.preprocessor.setCurrentIndex(unit.preprocessor.findData("softedge"))
    unit.show_map.setChecked(True)
    window.canvas.fit()
    settle(app)
    grab(window, "screenshot-controlnet.png")
    window.close()


if __name__ == "__main__":
    main()
