"""Take the README's screenshots of the real window with the real engine.

Run under a real X server (Xvfb), not the offscreen platform:
    xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb \
        python docs/make_screenshots.py [--model PATH]
Writes docs/screenshot-generating.png (mid-generation) and
docs/screenshot-inpainting.png (mid-inpaint, preview inside the picture) and
docs/screenshot-inpainted.png (after inpainting).
Uses the bundled starter model when present, else a tiny random-weight model.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from PIL import Image  # noqa: E402
from PySide6.QtCore import QPointF, QSettings, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from engine.api import STARTER_MODEL  # noqa: E402
from guiapp.app import share_the_gil_fairly  # noqa: E402
from guiapp.bridge import EngineBridge  # noqa: E402
from guiapp.settings import AppSettings  # noqa: E402
from guiapp.theme import apply_dark_theme  # noqa: E402
from guiapp.window import MainWindow  # noqa: E402

DOCS = ROOT / "docs"
MOST_BYTES = 150_000  # the README's pictures stay small
PROMPT = "a large red circle in the centre on a blue background"


def wait_until(app: QApplication, condition: Callable[[], bool], seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        app.processEvents()
        time.sleep(0.005)


def settle(app: QApplication, seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def grab(widget: QWidget, name: str) -> None:
    """The window as the X server shows it (dialogs over it included), kept under
    MOST_BYTES: a palette keeps a dark UI sharp at a third of the size."""
    screen = widget.screen() or QGuiApplication.primaryScreen()
    geometry = widget.frameGeometry()
    pixmap = screen.grabWindow(0, geometry.x(), geometry.y(), geometry.width(), geometry.height())
    if pixmap.isNull() or pixmap.width() < 100:
        pixmap = widget.grab()
    path = DOCS / name
    pixmap.save(str(path))
    if path.stat().st_size > MOST_BYTES:
        with Image.open(path) as image:
            image.convert("RGB").quantize(192).save(path, optimize=True)
    print(f"wrote {path} ({pixmap.width()}x{pixmap.height()}, {path.stat().st_size} bytes)")


def default_model(scratch: Path) -> str:
    """The bundled starter model when present, else a tiny random-weight one."""
    if (ROOT / "resources" / "starter-model").exists():
        return STARTER_MODEL
    from tiny_models import save_tiny_model

    return str(save_tiny_model(scratch / "tiny-model"))


def open_window(
    model: str | None = None, steps: int = 30, prompt: str = PROMPT, **engine: str
) -> tuple[QApplication, MainWindow]:
    """The real window over the real engine (CPU), its form set for a 128 px picture with
    seed 7, shown at the top left of the screen; its settings and output in a scratch folder."""
    from engine.worker import Engine

    share_the_gil_fairly()
    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    apply_dark_theme(app)
    scratch = Path(tempfile.mkdtemp(prefix="dd-shots-"))
    settings = AppSettings(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(EngineBridge(Engine(device="cpu", **engine)), settings)  # type: ignore[arg-type]
    window.set_output_folder(scratch / "out")
    window.resize(1320, 860)
    window.move(0, 0)
    window.show()
    m = window.form
    m.model, m.steps, m.random_seed, m.seed = model or default_model(scratch), steps, False, 7
    m.width = m.height = 128
    m.prompt = prompt
    settle(app, 1.0)
    return app, window


def scroll_to(widget: QWidget) -> None:
    """Scroll the scroll area holding widget until it shows."""
    scroll = widget.parent()
    while scroll is not None and not hasattr(scroll, "ensureWidgetVisible"):
        scroll = scroll.parent()
    if scroll is not None:
        scroll.ensureWidgetVisible(widget)


def brush(window: MainWindow, points: list[tuple[float, float]]) -> None:
    canvas = window.canvas
    viewport = canvas.viewport()
    to_view = [canvas.mapFromScene(QPointF(x, y)) for x, y in points]
    QTest.mousePress(
        viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, to_view[0]
    )
    for p in to_view[1:]:
        QTest.mouseMove(viewport, p, 5)
    QTest.mouseRelease(
        viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, to_view[-1]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument(
        "--inpaint-prompt", default="a large yellow star in the centre on a blue background"
    )
    args = parser.parse_args()
    app, window = open_window(args.model, args.steps, args.prompt)
    m = window.form

    # 1. mid-generation
    steps_seen: list[int] = []
    window.workspace.jobs.stepped.connect(lambda job: steps_seen.append(job.step))
    window.workspace.generate()
    wait_until(app, lambda: any(s >= args.steps // 2 for s in steps_seen))
    grab(window, "screenshot-generating.png")
    wait_until(app, lambda: len(window.workspace.history.entries()) == 1)
    settle(app)

    # 2. brush a mask over the middle, inpaint with another prompt
    canvas = window.canvas
    canvas.set_brush_size(44)
    window.mask_toolbar.softness_slider.setValue(30)
    # a ring around the centre and back, so the whole large circle is under the mask
    ring = [
        (64 + 16 * math.cos(a * math.pi / 4), 64 + 16 * math.sin(a * math.pi / 4)) for a in range(9)
    ]
    brush(window, [(64, 64), *ring, (64, 64)])
    m.prompt = args.inpaint_prompt
    m.strength = 1.0
    steps_seen.clear()
    window.workspace.inpaint()
    wait_until(app, lambda: any(s >= args.steps // 2 for s in steps_seen))
    grab(window, "screenshot-inpainting.png")
    wait_until(app, lambda: len(window.workspace.history.entries()) == 2)
    window.mask_toolbar.clear_action.trigger()  # show the result without the red overlay
    settle(app)
    grab(window, "screenshot-inpainted.png")
    window.close()


if __name__ == "__main__":
    main()
