"""Take the README's outpainting and forward-process screenshots of the real window with
the real engine and the starter model.

Run under a real X server (Xvfb), not the offscreen platform:
    xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb \
        python docs/make_canvas_screenshots.py
Writes docs/screenshot-expand.png (an expanded picture, the Expand canvas dialog open for
the next one) and docs/screenshot-forward.png (the Forward process panel part way).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "docs"), str(ROOT / "tests")]

from make_screenshots import settle, wait_until  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from engine.api import STARTER_MODEL, Expand  # noqa: E402
from guiapp.app import share_the_gil_fairly  # noqa: E402
from guiapp.bridge import EngineBridge  # noqa: E402
from guiapp.settings import AppSettings  # noqa: E402
from guiapp.theme import apply_dark_theme  # noqa: E402
from guiapp.window import MainWindow  # noqa: E402

DOCS = ROOT / "docs"
MOST_BYTES = 150_000


def grab(widget: QWidget, name: str) -> None:
    """The window as the X server shows it (dialogs over it included), kept small."""
    screen = widget.screen() or QGuiApplication.primaryScreen()
    geometry = widget.frameGeometry()
    pixmap = screen.grabWindow(0, geometry.x(), geometry.y(), geometry.width(), geometry.height())
    if pixmap.isNull() or pixmap.width() < 100:
        pixmap = widget.grab()
    path = DOCS / name
    pixmap.save(str(path))
    if path.stat().st_size > MOST_BYTES:  # a palette keeps a dark UI sharp at a third
        with Image.open(path) as image:
            image.convert("RGB").quantize(192).save(path, optimize=True)
    print(f"wrote {path} ({pixmap.width()}x{pixmap.height()}, {path.stat().st_size} bytes)")


def main() -> None:
    share_the_gil_fairly()
    app = QApplication.instance() or QApplication([sys.argv[0]])
    apply_dark_theme(app)
    scratch = Path(tempfile.mkdtemp(prefix="dd-canvas-shots-"))
    from engine.worker import Engine

    settings = AppSettings(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(EngineBridge(Engine(device="cpu")), settings)
    window.set_output_folder(scratch / "out")
    window.resize(1320, 860)
    window.move(0, 0)
    window.show()
    m = window.form
    m.model, m.steps, m.random_seed, m.seed = STARTER_MODEL, 30, False, 7
    m.width = m.height = 128
    m.prompt = "a large red circle in the centre on a blue background"
    settle(app, 1.0)
    history = window.workspace.history

    # 1. a picture, expanded 64 px left and right; the dialog open for the next expansion
    window.workspace.generate()
    wait_until(app, lambda: len(history.entries()) == 1)
    # The starter model paints a new circle into wide empty strips at strength 1.0; at
    # 0.7 from the stretched edge colours it continues the background.
    window.workspace.expand(Expand(left=64, right=64, fill="edge"), strength=0.7)
    wait_until(app, lambda: len(history.entries()) == 2)
    window.canvas.fit()
    dialog = window.expand_dialog()
    dialog.sides["bottom"].setValue(64)
    dialog.sides["right"].setValue(0)
    dialog.fill.setCurrentIndex(dialog.fill.findData("edge"))
    dialog.strength.setValue(0.7)
    settle(app, 0.5)
    frame = window.frameGeometry()  # beside the picture, over the queue
    dialog.move(frame.right() - dialog.width() - 8, frame.top() + 90)
    settle(app, 0.8)
    grab(window, "screenshot-expand.png")
    dialog.reject()

    # 2. the forward process: the expanded picture part way into noise
    window.forward_dock.show()
    window.forward_dock.raise_()
    panel = window.forward_panel
    panel.steps.setValue(30)
    panel.take_canvas_picture()
    panel.slider.setValue(12)
    wait_until(
        app, lambda: panel.job is None and panel.shown is not None and panel.shown.level == 12
    )
    settle(app, 0.8)
    grab(window, "screenshot-forward.png")
    window.close()


if __name__ == "__main__":
    main()
