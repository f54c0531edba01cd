"""Take the README's hires fix and upscale screenshots of the real window with the real
engine.

Run under a real X server (Xvfb), not the offscreen platform:
    xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb \
        python docs/make_upscale_screenshot.py [--model PATH]
Writes docs/screenshot-hires.png (a hires fix job, Latent 2x, during its second pass, the
Hires fix group open) and docs/screenshot-upscale.png (the finished picture enlarged 2x
from the history with the Upscale button: a tiled SD upscale part way through its tiles,
the Upscale group open). Uses the bundled starter model when present, else a tiny
random-weight model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "docs")]

from make_screenshots import grab, open_window, scroll_to, settle, wait_until  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    app, window = open_window(args.model, args.steps)
    m = window.form
    m.hires_enabled, m.hires_scale, m.hires_upscaler = True, 2.0, "Latent"
    m.hires_steps, m.hires_denoise = args.steps, 0.5
    scroll_to(window.parameter_panel.hires_group)
    settle(app, 1.0)
    history = window.workspace.history

    # 1. a hires fix, a few steps into its larger second pass
    steps_seen: list[int] = []
    window.workspace.jobs.stepped.connect(lambda job: steps_seen.append(job.step))
    window.workspace.generate()
    second_pass = args.steps + args.steps // 4
    wait_until(app, lambda: any(s >= second_pass for s in steps_seen))
    grab(window, "screenshot-hires.png")
    wait_until(app, lambda: len(history.entries()) == 1)
    settle(app)

    # 2. that picture enlarged 2x again from the history, its SD pass part way
    m.hires_enabled = False
    m.upscale_scale, m.upscale_upscaler, m.upscale_sd_tiles = 2.0, "Lanczos", True
    m.strength = 0.35
    scroll_to(window.parameter_panel.upscale_group)
    steps_seen.clear()
    window.history_strip.upscale_button.click()
    wait_until(app, lambda: len(steps_seen) >= 3)
    window.canvas.fit()  # the whole enlarged picture, not its corner at 1:1
    settle(app, 0.5)
    grab(window, "screenshot-upscale.png")
    wait_until(app, lambda: len(history.entries()) == 2)
    settle(app)
    window.close()


if __name__ == "__main__":
    main()
