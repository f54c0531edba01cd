"""How long a model-library scan of many files takes, and how much it stalls the window.

Makes a ComfyUI-style `models/` tree of N files in a temporary folder (fake .safetensors
files with real headers: checkpoints of about 1,100 tensor names like SD 1.x and SDXL,
LoRAs, embeddings, VAEs, plus preview images, YAML and text files), opens the Models
dialog offscreen and scans it three times, while a Qt timer ticks every 4 ms on the GUI
thread; a stall is how much later than 4 ms the next tick came.

  baseline      the same timer with the dialog open and no scan (this machine's noise)
  first_scan    nothing known: every header is read
  rescan        the index is warm: unchanged files are not opened
  rescan_after_deleting
                a fifth of the files deleted first: their rows leave the table at the
                end of the scan (the part an earlier design stalled in)

Each phase reports seconds, files per second, worst and 99th-percentile stall, the
worst gap between ticks, and the GUI thread's own CPU time within a gap (worst and 99th
percentile): a gap longer than that was spent waiting for a core, which on a loaded
machine is the load, not the window. Prints one JSON object. Goal: worst stall <= 16 ms.

Usage: nice python bench/library_scan.py [--files 5000] [--baseline-seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from engine.library import ModelLibrary  # noqa: E402
from guiapp.widgets.models_dialog import ModelsDialog  # noqa: E402

TICK_MS = 4


def _safetensors(path: Path, keys: dict[str, list[int]], metadata: dict | None = None) -> None:
    header: dict = {
        k: {"dtype": "F16", "shape": s, "data_offsets": [0, 0]} for k, s in keys.items()
    }
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def _checkpoint_keys(xl: bool) -> dict[str, list[int]]:
    keys = {
        f"model.diffusion_model.input_blocks.{i}.{j}.weight": [320, 320, 3, 3]
        for i in range(12)
        for j in range(40)
    }
    keys.update(
        {
            f"first_stage_model.decoder.up.{i}.block.{j}.conv1.weight": [512, 512, 3, 3]
            for i in range(4)
            for j in range(40)
        }
    )
    encoder = "conditioner.embedders.1.model." if xl else "cond_stage_model.transformer."
    keys.update(
        {
            f"{encoder}text_model.encoder.layers.{i}.mlp.fc{j}.weight": [3072, 768]
            for i in range(12)
            for j in range(40)
        }
    )
    return keys


def make_tree(root: Path, count: int, seed: int = 0) -> Path:
    """A ComfyUI-style models tree of `count` files; returns the models folder."""
    rng = random.Random(seed)
    models = root / "ComfyUI" / "models"
    folders = {name: models / name for name in ("checkpoints", "loras", "embeddings", "vae")}
    for folder in folders.values():
        for sub in range(10):
            (folder / f"set{sub}").mkdir(parents=True, exist_ok=True)
    sd1, sdxl = _checkpoint_keys(False), _checkpoint_keys(True)
    lora = {
        f"lora_unet_down_blocks_{i}_attentions_0.lora_down.weight": [8, 320] for i in range(300)
    }
    lora["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = [8, 768]
    for n in range(count):
        roll = rng.random()
        sub = f"set{n % 10}"
        if roll < 0.05:
            _safetensors(
                folders["checkpoints"] / sub / f"model-{n}.safetensors", sd1 if n % 2 else sdxl
            )
        elif roll < 0.45:
            _safetensors(
                folders["loras"] / sub / f"lora-{n}.safetensors",
                lora,
                {"ss_base_model_version": "sd_v1"},
            )
        elif roll < 0.55:
            _safetensors(
                folders["embeddings"] / sub / f"emb-{n}.safetensors", {"emb_params": [4, 768]}
            )
        elif roll < 0.6:
            _safetensors(
                folders["vae"] / sub / f"vae-{n}.safetensors",
                {
                    "encoder.down.0.block.0.conv1.weight": [128, 128, 3, 3],
                    "decoder.up.0.block.0.conv1.weight": [128, 128, 3, 3],
                },
            )
        else:
            folder = rng.choice(list(folders.values())) / sub
            suffix = rng.choice([".preview.png", ".yaml", ".txt", ".civitai.info", ".json"])
            (folder / f"other-{n}{suffix}").write_bytes(b"x" * rng.randint(10, 2000))
    return models


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Ticker:
    """Stamps every tick of a 4 ms timer on the GUI thread."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.busy: list[float] = []  # GUI-thread CPU time spent within each gap
        self._last = time.perf_counter()
        self._last_cpu = time.thread_time()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.gaps.append((now - self._last) * 1000)
        self.busy.append((cpu - self._last_cpu) * 1000)
        self._last, self._last_cpu = now, cpu

    def reset(self) -> None:
        self.gaps, self.busy = [], []
        self._last, self._last_cpu = time.perf_counter(), time.thread_time()

    def figures(self) -> dict:
        stalls = [max(0.0, g - TICK_MS) for g in self.gaps]
        return {
            "ticks": len(self.gaps),
            "worst_stall_ms": round(max(stalls, default=0.0), 2),
            "p99_stall_ms": round(percentile(stalls, 99), 2),
            "worst_gap_ms": round(max(self.gaps, default=0.0), 2),
            "p99_gap_ms": round(percentile(self.gaps, 99), 2),
            "ticks_over_16ms_stall": sum(1 for s in stalls if s > 16),
            # Of the worst gaps, how much the GUI thread itself computed: the rest of a
            # gap is the thread waiting for a CPU core (other processes, the machine's load).
            "worst_gui_busy_ms": round(max(self.busy, default=0.0), 2),
            "p99_gui_busy_ms": round(percentile(self.busy, 99), 2),
        }


def run_until(condition, timeout: float) -> None:
    loop = QEventLoop()
    checker = QTimer()
    checker.setInterval(20)
    deadline = time.monotonic() + timeout
    checker.timeout.connect(
        lambda: loop.quit() if condition() or time.monotonic() > deadline else None
    )
    checker.start()
    loop.exec()
    checker.stop()


def measure_scan(dialog: ModelsDialog, ticker: Ticker, files: int) -> dict:
    ended: list[str] = []
    dialog.feeder.ended.connect(ended.append)
    ticker.reset()
    began = time.perf_counter()
    dialog.rescan()
    run_until(lambda: bool(ended), timeout=600)
    seconds = time.perf_counter() - began
    dialog.feeder.ended.disconnect(ended.append)
    figures = ticker.figures()
    summary = dialog.feeder.summary
    return {
        "seconds": round(seconds, 2),
        "files_per_s": round(files / seconds, 1),
        "rows": dialog.model.rowCount(),
        "headers_read": summary.get("headers_read"),
        "gone": summary.get("gone"),
        "child_seconds": round(summary.get("seconds", 0.0), 2),
        "status": ended[0] if ended else "",
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    args = parser.parse_args()

    app = QApplication.instance() or QApplication([])
    scratch = Path(tempfile.mkdtemp(prefix="dd-library-bench-"))
    try:
        made = time.perf_counter()
        models = make_tree(scratch / "tree", args.files)
        make_seconds = time.perf_counter() - made
        library = ModelLibrary(scratch / "data")
        dialog = ModelsDialog(library)
        dialog.resize(900, 520)
        dialog.show()
        ticker = Ticker()
        run_until(lambda: not dialog.feeder.running, timeout=60)  # the empty first scan

        ticker.reset()
        run_until(lambda: False, timeout=args.baseline_seconds)
        baseline = ticker.figures()

        library.add_folder(models)
        first = measure_scan(dialog, ticker, args.files)
        again = measure_scan(dialog, ticker, args.files)
        doomed = sorted(p for p in models.rglob("*.safetensors"))[::5]
        for path in doomed:
            path.unlink()
        after_delete = measure_scan(dialog, ticker, args.files - len(doomed))
        ticker.timer.stop()
        dialog.close()
        app.processEvents()
        result = {
            "files": args.files,
            "tree_build_seconds": round(make_seconds, 2),
            "tick_ms": TICK_MS,
            "baseline": baseline,
            "first_scan": first,
            "rescan": again,
            "rescan_after_deleting": {"deleted": len(doomed), **after_delete},
            "goal_worst_stall_ms": 16,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
