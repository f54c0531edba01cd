"""Memory over hours of use: many generations in a row through the engine, then through
the window (offscreen, real engine), with the resident memory (RSS) measured as they go.

Each part runs in its own process so that one does not inherit the other's memory. Prints
one JSON object: RSS after generation 5, 25 and 50 (of --count) and the growth after the
warm-up (RSS at the end minus RSS after 5) for each part. The goal: at most 50 MB.

    OMP_NUM_THREADS=1 nice python bench/memory_soak.py [--count 50] [--steps 20]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    """Resident memory of this process now (not the peak), from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def checkpoints(count: int) -> list[int]:
    return sorted({min(5, count), min(25, count), count})


def summary(samples: dict[int, float], count: int) -> dict[str, object]:
    marks = checkpoints(count)
    return {
        "rss_mb_after": {str(k): round(samples[k], 1) for k in marks},
        "growth_after_warmup_mb": round(samples[count] - samples[marks[0]], 1),
    }


def request(i: int, steps: int, size: int):  # noqa: ANN201
    from engine.api import GenerationRequest

    # Varied prompts and seeds, as a person would; the same model throughout.
    prompts = ["a red circle", "a blue square on green", "a yellow star", "a small cat"]
    return GenerationRequest(
        prompt=prompts[i % len(prompts)], steps=steps, width=size, height=size, seed=1000 + i
    )


def soak_engine(count: int, steps: int, size: int) -> dict[str, object]:
    from engine.api import Finished
    from engine.worker import Engine

    engine = Engine(device="cpu")
    samples: dict[int, float] = {}
    try:
        for i in range(1, count + 1):
            result = engine.generate(request(i, steps, size), timeout=600)
            if not isinstance(result, Finished):
                raise RuntimeError(f"generation {i} did not finish: {result}")
            del result
            if i in checkpoints(count):
                gc.collect()
                samples[i] = rss_mb()
    finally:
        engine.shutdown(30)
    return summary(samples, count)


def soak_window(count: int, steps: int, size: int) -> dict[str, object]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtWidgets import QApplication

    from engine.worker import Engine
    from guiapp.bridge import EngineBridge
    from guiapp.settings import AppSettings
    from guiapp.window import MainWindow

    app = QApplication.instance() or QApplication([])
    folder = Path(tempfile.mkdtemp(prefix="diffusiondesk-soak-"))
    settings = AppSettings(QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(EngineBridge(Engine(device="cpu")), settings)
    window.set_output_folder(folder / "out")
    window.show()
    samples: dict[int, float] = {}
    saved = [0]
    window.writer.saved.connect(lambda _job: saved.__setitem__(0, saved[0] + 1))
    try:
        for i in range(1, count + 1):
            window.model.prompt = request(i, steps, size).prompt
            window.model.steps, window.model.width, window.model.height = steps, size, size
            window.model.random_seed, window.model.seed = False, 1000 + i
            if window.generate() is None:
                raise RuntimeError(f"the window refused job {i}: {window.error_area.message()}")
            deadline = time.monotonic() + 600
            while saved[0] < i:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"generation {i} did not finish in the window")
                app.processEvents()
                time.sleep(0.005)
            for _ in range(20):  # let the window finish showing the result
                app.processEvents()
            for png in (folder / "out").glob("*.png"):
                png.unlink()  # disk use is not what this measures
            if i in checkpoints(count):
                gc.collect()
                samples[i] = rss_mb()
    finally:
        window.close()
        QCoreApplication.processEvents()
    result = summary(samples, count)
    result["history_entries"] = len(window.history.entries())
    return result


def run_part(part: str, args: argparse.Namespace) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, "--part", part, "--count", str(args.count),
         "--steps", str(args.steps), "--size", str(args.size)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--part", choices=["engine", "window"], default=None)
    args = parser.parse_args()
    if args.part == "engine":
        print(json.dumps(soak_engine(args.count, args.steps, args.size)))
        return
    if args.part == "window":
        print(json.dumps(soak_window(args.count, args.steps, args.size)))
        return
    start = time.perf_counter()
    result = {
        "count": args.count,
        "steps": args.steps,
        "size": args.size,
        "model": "starter",
        "engine": run_part("engine", args),
        "window": run_part("window", args),
    }
    result["goal_growth_mb"] = 50
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
