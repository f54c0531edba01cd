"""Memory over hours of use: many generations in a row, first through the engine alone,
then through the window (offscreen, real engine), each in a fresh process.

Prints one JSON object: resident memory (RSS, MB) after 5, 25 and 50 generations of
each part, and the growth after the warm-up (RSS after the last minus after the 5th).
The goal (issue 13) is a growth of at most 50 MB for each.

Usage: OMP_NUM_THREADS=1 nice python bench/memory_soak.py [--runs 50] [--steps 20]
       [--size 128] [--model starter|PATH] [--part engine|window]
Without --model it uses the bundled starter model.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

CHECKPOINTS = (5, 25, 50)


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def soak(runs: int, generate_one: Callable[[], None]) -> dict[str, float]:
    marks = sorted({*(c for c in CHECKPOINTS if c <= runs), runs})
    found: dict[str, float] = {}
    for index in range(1, runs + 1):
        generate_one()
        if index in marks:
            gc.collect()
            found[f"rss_mb_after_{index}"] = round(rss_mb(), 1)
    first = found[f"rss_mb_after_{marks[0]}"]
    found["growth_after_warmup_mb"] = round(found[f"rss_mb_after_{runs}"] - first, 1)
    return found


def engine_part(args: argparse.Namespace) -> dict[str, float]:
    from engine.api import Finished, GenerationRequest
    from engine.worker import Engine

    engine = Engine(device="cpu")
    request = GenerationRequest(
        prompt="a red circle on a blue background",
        model=args.model,
        steps=args.steps,
        width=args.size,
        height=args.size,
    )

    def one() -> None:
        event = engine.generate(request, timeout=600)
        if not isinstance(event, Finished):
            raise SystemExit(f"the engine did not finish: {event}")

    try:
        return soak(args.runs, one)
    finally:
        engine.shutdown(10)


def window_part(args: argparse.Namespace) -> dict[str, float]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from engine.worker import Engine
    from guiapp.bridge import EngineBridge
    from guiapp.settings import AppSettings
    from guiapp.window import MainWindow

    app = QApplication.instance() or QApplication([])
    scratch = Path(tempfile.mkdtemp(prefix="memory-soak-"))
    settings = AppSettings(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(EngineBridge(Engine(device="cpu")), settings)
    window.set_output_folder(scratch / "out")
    window.show()
    form = window.form
    form.model, form.steps, form.width, form.height = args.model, args.steps, args.size, args.size
    saved = [0]
    window.workspace.jobs.ended.connect(lambda _job: saved.__setitem__(0, saved[0] + 1))

    def one() -> None:
        target = saved[0] + 1
        if window.workspace.generate() is None:
            raise SystemExit(window.error_area.message())
        deadline = time.monotonic() + 600
        while saved[0] < target:
            app.processEvents()
            time.sleep(0.005)
            if time.monotonic() > deadline:
                raise SystemExit("a generation took more than 10 minutes")
        if window.workspace.error:
            raise SystemExit(window.workspace.error)

    try:
        result = soak(args.runs, one)
        result["history_entries"] = len(window.workspace.history.entries())
        result["jobs_kept"] = len(window.workspace.jobs)
        result["runs_with_step_previews"] = len(window.workspace.history.runs_with_previews())
        return result
    finally:
        window.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", "--count", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--model", default="starter")
    parser.add_argument("--part", choices=["engine", "window"], default=None)
    args = parser.parse_args()
    if args.part == "engine":
        print(json.dumps(engine_part(args)))
        return
    if args.part == "window":
        print(json.dumps(window_part(args)))
        return
    result: dict[str, object] = {
        "model": args.model,
        "runs": args.runs,
        "steps": args.steps,
        "size": args.size,
        "goal_growth_mb": 50,
    }
    for part in ("engine", "window"):
        command = [sys.executable, __file__, "--part", part, *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{part} part failed:\n{done.stderr[-3000:]}")
        result[part] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
