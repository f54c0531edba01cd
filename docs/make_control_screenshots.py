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

from make_screenshots import grab, settle, wait_until  # noqa: E402
from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.api import STARTER_MODEL  # noqa: E402
from guiapp.app import share_the_gil_fairly  # noqa: E402
from guiapp.bridge import EngineBridge  # noqa: E402
from guiapp.settings import AppSettings  # noqa: E402
from guiapp.theme import apply_dark_theme  # noqa: E402
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
    share_the_gil_fairly()
    app = QApplication.instance() or QApplication([sys.argv[0]])
    apply_dark_theme(app)
    scratch = Path(tempfile.mkdtemp(prefix="dd-shots-"))
    from engine.worker import Engine

    settings = AppSettings(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(EngineBridge(Engine(device="cpu", dtype="float32")), settings)
    window.set_output_folder(scratch / "out")
    window.resize(1320, 860)
    window.show()
    m = window.form
    m.model, m.steps, m.random_seed, m.seed = STARTER_MODEL, 12, False, 1
    m.width = m.height = 128
    m.prompt = "on a white background"
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
    unit.model.setText(str(starter_controlnet(scratch / "controlnet")))
    unit.preprocessor.setCurrentIndex(unit.preprocessor.findData("softedge"))
    unit.show_map.setChecked(True)
    window.canvas.fit()
    settle(app)
    grab(window, "screenshot-controlnet.png")
    window.close()


if __name__ == "__main__":
    main()
