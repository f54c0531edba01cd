"""Take the README's hires fix screenshot of the real window with the real engine.

Run under a real X server (Xvfb), not the offscreen platform:
    xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb \
        python docs/make_upscale_screenshot.py [--model PATH]
Writes docs/screenshot-hires.png: a hires fix job (Latent, 2x) during its second pass,
the Hires fix group open in the parameter panel. Uses the bundled starter model when
present, else a tiny random-weight model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "docs")]

from make_screenshots import grab, settle, wait_until  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.api import STARTER_MODEL  # noqa: E402
from guiapp.app import share_the_gil_fairly  # noqa: E402
from guiapp.bridge import EngineBridge  # noqa: E402
from guiapp.settings import AppSettings  # noqa: E402
from guiapp.theme import apply_dark_theme  # noqa: E402
from guiapp.window import MainWindow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompt", default="a large red circle in the centre on a blue background")
    args = parser.parse_args()
    share_the_gil_fairly()
    app = QApplication.instance() or QApplication([sys.argv[0]])
    apply_dark_theme(app)
    scratch = Path(tempfile.mkdtemp(prefix="dd-shots-"))
    model = args.model
    if model is None:
        if (ROOT / "resources" / "starter-model").exists():
            model = STARTER_MODEL
        else:
            from tiny_models import save_tiny_model

            model = str(save_tiny_model(scratch / "tiny-model"))

    from engine.worker import Engine

    settings = AppSettings(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(EngineBridge(Engine(device="cpu")), settings)
    window.set_output_folder(scratch / "out")
    window.resize(1320, 860)
    window.show()
    m = window.form
    m.model, m.steps, m.random_seed, m.seed = model, args.steps, False, 7
    m.width = m.height = 128
    m.prompt = args.prompt
    m.hires_enabled, m.hires_scale, m.hires_upscaler = True, 2.0, "Latent"
    m.hires_steps, m.hires_denoise = args.steps, 0.5
    group = window.parameter_panel.hires_group
    scroll = group.parent()
    while scroll is not None and not hasattr(scroll, "ensureWidgetVisible"):
        scroll = scroll.parent()
    if scroll is not None:
        scroll.ensureWidgetVisible(group)
    settle(app, 1.0)

    steps_seen: list[int] = []
    window.workspace.jobs.stepped.connect(lambda job: steps_seen.append(job.step))
    window.workspace.generate()
    second_pass = args.steps + args.steps // 4  # a few steps into the larger pass
    wait_until(app, lambda: any(s >= second_pass for s in steps_seen))
    grab(window, "screenshot-hires.png")
    wait_until(app, lambda: len(window.workspace.history.entries()) == 1)
    settle(app)
    window.close()


if __name__ == "__main__":
    main()
