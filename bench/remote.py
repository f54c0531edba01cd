"""The same starter-model picture through the local engine, diffusiondesk-server and Ray Serve.

    python bench/remote.py [--runs 7] [--steps 20] [--ray] [--jobs 8]

One engine serves the first two paths: directly (engine.worker.Engine) and over loopback
(a server thread on 127.0.0.1 and a RemoteEngine, so the WebSocket, the JSON records,
the WebP previews and the PNG results are all on the measured path). Runs alternate
local and remote after one warm-up each. With --ray, the same picture then goes
RemoteEngine -> server -> Ray Serve replica (a local Ray
instance, the starter model in each replica), alternating with local runs again, then
--jobs pictures at once measure throughput with one and with two replicas.

Medians of time to the first preview and of the total time (submit to Finished),
previews delivered per run, and each path's ratios to the local runs interleaved with
it, which this shared machine's drift affects far less than the seconds. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
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
    parser.add_argument("--ray", action="store_true", help="also through Ray Serve")
    parser.add_argument("--jobs", type=int, default=8, help="Ray: pictures for throughput")
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
            for i in range(args.runs):
                for path in ("local", "remote")[:: 1 if i % 2 == 0 else -1]:  # both go first
                    runs[path].append(timed(local if path == "local" else remote, request))
        finally:
            remote.shutdown(10)
    try:
        if args.ray:
            runs["ray"], runs["local_beside_ray"], throughput = through_ray(
                local, request, args.runs, args.jobs
            )
    finally:
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
    # Each path against the local runs interleaved with it (the load drifts between phases).
    for path, base in (("remote", "local"), ("ray", "local_beside_ray")):
        if path in runs:
            out[f"{path}_ratio_first_preview"] = round(
                median(path, "first") / median(base, "first"), 3
            )
            out[f"{path}_ratio_total"] = round(median(path, "total") / median(base, "total"), 3)
    if args.ray:
        out["ray_throughput_pictures_per_s"] = throughput
        out["ray_throughput_ratio_2_to_1"] = round(throughput["2"] / throughput["1"], 3)
    out["cpus"] = os.cpu_count()
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]  # others' work on the machine
    print(json.dumps(out))


def through_ray(
    local: Engine, request: GenerationRequest, runs: int, jobs: int
) -> tuple[list[dict[str, float]], list[dict[str, float]], dict[str, float]]:
    """Timed runs through a one-replica deployment, each beside a local run, then
    throughput with one replica and with two."""
    import ray
    from ray import serve

    from server.ray_engine import RayEngine
    from server.ray_serve import deploy, local_engine

    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    options = {"num_cpus": 2, "runtime_env": {"env_vars": env}}
    throughput: dict[str, float] = {}
    timed_runs: list[dict[str, float]] = []
    beside: list[dict[str, float]] = []
    try:
        for replicas in (1, 2):
            handle, _ = deploy(
                replicas=replicas,
                autoscale=False,
                num_cpus=1,
                init_options=options,
                # The same precision as the local engine, so that only the path differs.
                engine_factory=functools.partial(local_engine, "cpu", "float32"),
            )
            cluster = RayEngine(handle)
            hub = JobHub(cluster, ModelCatalog(), where="loopback")
            with BackgroundServer(create_app(hub)) as server:
                remote = RemoteEngine(server.url)
                try:
                    for _ in range(replicas):  # loads the model in each replica
                        timed(remote, request)
                    if replicas == 1:
                        for i in range(runs):
                            if i % 2:
                                timed_runs.append(timed(remote, request))
                            beside.append(timed(local, request))
                            if not i % 2:
                                timed_runs.append(timed(remote, request))
                    start = time.perf_counter()
                    ids = [remote.submit(request.with_changes(seed=i)) for i in range(jobs)]
                    for job in ids:
                        if not isinstance(remote.wait(job, 600), Finished):
                            raise SystemExit(f"a throughput job did not finish: {job}")
                    throughput[str(replicas)] = round(jobs / (time.perf_counter() - start), 3)
                finally:
                    remote.shutdown(10)
                    cluster.shutdown(10)
    finally:
        serve.shutdown()
        ray.shutdown()
    return timed_runs, beside, throughput


if __name__ == "__main__":
    main()
