"""How responsive the window stays while the engine generates.

While real jobs run through the real window, a Qt timer ticking every few
milliseconds measures how late the event loop serves it (a stall); a listener on the
engine stamps every step so we can tell how long each preview took to reach the
canvas. Prints one JSON object:

  max_stall_ms, p99_stall_ms    event-loop stalls while generating (goal: max <= 16)
  steps, previews_shown         steps run vs previews painted on the canvas
  previews_dropped              stale previews the bridge dropped (overtaken by a newer)
  max_preview_latency_ms        engine step -> canvas, worst case
  frames_with_steps, frames_with_preview
                                16.7 ms frames in which a step happened, and in how
                                many of them (or the next one) the newest preview was shown
  max_gui_handler_ms, p99_gui_handler_ms
                                time the window's own slots took on the GUI thread; a
                                stall beyond this is the OS or the GIL serving other
                                threads (the engine's torch threads, other processes)

Usage: python bench/ui_responsiveness.py [--model PATH|starter] [--steps 20] [--runs 2]
Without --model it uses the bundled starter model if present, else a tiny random model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.api import STARTER_MODEL, Step  # noqa: E402
from guiapp.app import ENGINE_NICENESS, share_the_gil_fairly  # noqa: E402
from guiapp.bridge import EngineBridge  # noqa: E402
from guiapp.settings import AppSettings  # noqa: E402
from guiapp.window import MainWindow  # noqa: E402

TICK_MS = 4
FRAME = 1.0 / 60.0


def choose_model(requested: str | None, scratch: Path) -> str:
    if requested:
        return requested
    if (ROOT / "resources" / "starter-model").exists():
        return STARTER_MODEL
    from tiny_models import save_tiny_model

    return str(save_tiny_model(scratch / "tiny-model"))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--default-gil-interval",
        action="store_true",
        help="keep Python's 5 ms GIL switch interval instead of the application's 1 ms",
    )
    parser.add_argument(
        "--niceness",
        type=int,
        default=ENGINE_NICENESS,
        help=f"engine thread priority drop, as the application sets it ({ENGINE_NICENESS})",
    )
    args = parser.parse_args()
    if not args.default_gil_interval:
        share_the_gil_fairly()

    _app = QApplication.instance() or QApplication([])
    scratch = Path(tempfile.mkdtemp(prefix="dd-bench-"))
    model = choose_model(args.model, scratch)

    from engine.worker import Engine

    engine = Engine(device=args.device, niceness=args.niceness)
    step_times: dict[tuple[int, int], float] = {}
    lock = threading.Lock()

    def stamp(event: object) -> None:
        if isinstance(event, Step):
            with lock:
                step_times[(event.job_id, event.step)] = time.perf_counter()

    engine.add_listener(stamp)
    settings = AppSettings(QSettings(str(scratch / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(EngineBridge(engine), settings)
    window.set_output_folder(scratch / "out")
    window.resize(1280, 820)
    window.show()
    m = window.form
    m.model, m.steps, m.width, m.height = model, args.steps, args.size, args.size
    m.random_seed, m.seed, m.batch_size = False, 1, 1

    shown: list[tuple[float, int, int]] = []  # (time, job, step) of previews painted
    window.workspace.jobs.stepped.connect(
        lambda job: shown.append((time.perf_counter(), job.id, job.step))
    )

    saved_seconds: list[float] = []
    stalls: list[float] = []
    last_tick = [time.perf_counter()]
    measuring = [False]

    def tick() -> None:
        now = time.perf_counter()
        if measuring[0]:
            stalls.append(max(0.0, (now - last_tick[0]) * 1000 - TICK_MS))
        last_tick[0] = now

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    timer.start()

    done = [False]
    window.workspace.jobs.ended.connect(lambda _job: done.__setitem__(0, True))
    quitter = QTimer()
    quitter.setInterval(5)
    loop = QEventLoop()  # not app.exec()/quit(): Qt 6's quit() closes the windows
    quitter.timeout.connect(lambda: loop.quit() if done[0] else None)

    def run_job() -> None:
        """Submit like a person would and run the real event loop until it is saved."""
        done[0] = False
        if window.workspace.generate() is None:
            raise SystemExit(f"could not submit: {window.error_area.message()}")
        quitter.start()
        loop.exec()
        quitter.stop()
        if window.error_area.message():
            raise SystemExit(window.error_area.message())

    original_on_saved = window.workspace._saved

    def timed_on_saved(saved: object) -> None:
        began = time.perf_counter()
        original_on_saved(saved)
        saved_seconds.append(time.perf_counter() - began)

    window.workspace.writer.saved.disconnect(window.workspace._saved)
    window.workspace.writer.saved.connect(timed_on_saved)

    run_job()  # warm-up: model loading is not what we measure
    window.bridge.delivery_seconds.clear()
    saved_seconds.clear()
    warm_steps = len(step_times)
    shown.clear()
    with lock:
        step_times.clear()
    started = time.perf_counter()
    last_tick[0] = time.perf_counter()
    measuring[0] = True
    for _ in range(args.runs):
        run_job()
    measuring[0] = False
    elapsed = time.perf_counter() - started
    timer.stop()

    with lock:
        stamps = dict(step_times)
    latencies = [
        (t - stamps[(job, step)]) * 1000 for t, job, step in shown if (job, step) in stamps
    ]
    step_frames = {int((t - started) / FRAME) for t in stamps.values()}
    shown_frames = {int((t - started) / FRAME) for t, _, _ in shown}
    served = sum(1 for f in step_frames if f in shown_frames or f + 1 in shown_frames)
    result = {
        "model": model if model == STARTER_MODEL else "tiny random-weight SD (tests/tiny_models)",
        "device": engine.device_description,
        "size": args.size,
        "steps_per_run": args.steps,
        "runs": args.runs,
        "warmup_steps": warm_steps,
        "seconds": round(elapsed, 2),
        "ticks": len(stalls),
        "max_stall_ms": round(max(stalls, default=0.0), 2),
        "p99_stall_ms": round(percentile(stalls, 99), 2),
        "steps": len(stamps),
        "previews_shown": len(shown),
        "previews_dropped": window.bridge.previews_dropped,
        "max_preview_latency_ms": round(max(latencies, default=0.0), 2),
        "frames_with_steps": len(step_frames),
        "frames_with_preview": served,
        "goal_max_stall_ms": 16,
        # the window's own work on the GUI thread (event delivery incl. all its slots,
        # and showing a saved result): what our code costs, apart from CPU contention
        "max_gui_handler_ms": round(
            1000 * max([*window.bridge.delivery_seconds, *saved_seconds], default=0.0), 2
        ),
        "p99_gui_handler_ms": round(
            1000 * percentile([*window.bridge.delivery_seconds, *saved_seconds], 99), 2
        ),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "gil_switch_interval_s": sys.getswitchinterval(),
        "engine_niceness": args.niceness,
    }
    window.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
