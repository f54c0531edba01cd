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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "docs"), str(ROOT / "tests")]

from make_screenshots import grab, open_window, settle, wait_until  # noqa: E402

from engine.api import STARTER_MODEL, Expand  # noqa: E402


def main() -> None:
    app, window = open_window(STARTER_MODEL, 30)
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
