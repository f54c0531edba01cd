"""The same starter-model picture through the local engine and through diffusiondesk-server.

    python bench/remote.py [--runs 7] [--steps 20]

One engine serves both paths: directly (engine.worker.Engine) and over loopback
(a server thread on 127.0.0.1 and a RemoteEngine, so the WebSocket, the JSON records,
the WebP previews and the PNG results are all on the measured path). Runs alternate
local and remote after one warm-up each; medians of time to the first preview and of
the total time (submit to Finished), previews delivered per run, and the ratios
remote / local, which this shared machine's drift affects far less than the seconds.
Ray Serve is not measured: it is not built yet. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.api import STARTER_MODEL, Event, Finished, GenerationRequest, Step  # noqa: E402
from engine.remote import RemoteEngine  # noqa: E402
from engine.worker import Engine  # noqa: E402
from server.app import create_app  # noqa: E402
from server.catalog import ModelCatalog  # noqa: E402
from server.hub import JobHub  # noqa: E402
from server.running import BackgroundServer  # noqa: E402


def timed(engine: Any, request: GenerationRequest) -> dict[str, float]:
    """One picture: seconds to the first preview and to Finished, previews received."""
    previews: list[float] = []
    lock = threading.Lock()

    def on_event(event: Event) -> None:
        if isinstance(event, Step):
            with lock:
                previews.append(time.perf_counter())

    engine.add_listener(on_event)
    try:
        start = time.perf_counter()
        result = engine.wait(engine.submit(request), 600)
        end = time.perf_counter()
    finally:
        engine.remove_listener(on_event)
    if not isinstance(result, Finished):
        raise SystemExit(f"generation did not finish: {result}")
    return {"first": previews[0] - start, "total": end - start, "previews": len(previews)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    request = GenerationRequest(
        prompt="a red circle on a blue background", steps=args.steps, seed=1, model=STARTER_MODEL
    )
    local = Engine(device="cpu", dtype="float32")
    hub = JobHub(local, ModelCatalog(), where="loopback")
    with BackgroundServer(create_app(hub)) as server:
        remote = RemoteEngine(server.url)
        if not remote.wait_connected(60):
            raise SystemExit(remote.connection_error)
        try:
            timed(local, request)  # loads the model
            timed(remote, request)
            runs: dict[str, list[dict[str, float]]] = {"local": [], "remote": []}
            for _ in range(args.runs):
                runs["local"].append(timed(local, request))
                runs["remote"].append(timed(remote, request))
        finally:
            remote.shutdown(10)
            local.shutdown(10)

    def median(path: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[path])

    out: dict[str, Any] = {"steps": args.steps, "runs": args.runs, "size": "128x128"}
    for path in runs:
        out[path] = {
            "first_preview_s": round(median(path, "first"), 4),
            "total_s": round(median(path, "total"), 4),
            "previews_min": min(r["previews"] for r in runs[path]),
            "previews_max": max(r["previews"] for r in runs[path]),
        }
    out["ratio_first_preview"] = round(median("remote", "first") / median("local", "first"), 3)
    out["ratio_total"] = round(median("remote", "total") / median("local", "total"), 3)
    out["ray_serve"] = "not built"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
