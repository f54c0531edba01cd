"""diffusiondesk-server: serve one local engine over HTTP and a WebSocket stream.

Binds to 127.0.0.1 by default. Binding to any other address needs an access token:
given with --token (or DIFFUSIONDESK_TOKEN), or generated on the first start, printed
once, and kept as a digest in the data folder. TLS: --tls-cert/--tls-key, or put a
reverse proxy that terminates TLS in front of a loopback server.

Exit status: 0 stopped, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path

PROG = "diffusiondesk-server"
DEFAULT_PORT = 7860  # AUTOMATIC1111's, so that A1111 clients find us with their defaults


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Serve a DiffusionDesk engine.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument(
        "--models",
        type=Path,
        action="append",
        default=[],
        help="model folder clients may choose from (repeatable; ours, A1111's or ComfyUI's)",
    )
    p.add_argument(
        "--token", default=None, help="access token (or the DIFFUSIONDESK_TOKEN variable)"
    )
    p.add_argument("--new-token", action="store_true", help="make and print a new token")
    p.add_argument("--token-file", type=Path, default=None, help="where the digest is kept")
    p.add_argument("--tls-cert", default=None, help="certificate file (PEM) for HTTPS/WSS")
    p.add_argument("--tls-key", default=None, help="private key file (PEM)")
    p.add_argument("--max-upload-mb", type=float, default=64.0, help="largest request body")
    p.add_argument("--rate", type=float, default=5.0, help="generations a second per client")
    p.add_argument("--name", default=socket.gethostname(), help="shown where jobs ran")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="auto", help="auto, float32, float16, bfloat16")
    p.add_argument("--debug-errors", action="store_true", help="send tracebacks to clients")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="serve on a Ray cluster (no address: start a local one)",
    )
    p.add_argument("--replicas", type=int, default=2, help="Ray: most replicas (autoscaled)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, help="Ray: GPUs per replica")
    return p


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        return _error(f"--port must be 0 to 65535, got {args.port}")
    if bool(args.tls_cert) != bool(args.tls_key):
        return _error("--tls-cert and --tls-key go together")
    for path in (args.tls_cert, args.tls_key):
        if path and not Path(path).is_file():
            return _error(f"{path} does not exist")
    for folder in args.models:
        if not folder.is_dir():
            return _error(f"--models {folder} is not a folder")
    if args.max_upload_mb <= 0 or args.rate <= 0:
        return _error("--max-upload-mb and --rate must be positive")
    if args.replicas < 1:
        return _error(f"--replicas must be at least 1, got {args.replicas}")
    missing = [m for m in ("fastapi", "uvicorn", "websockets") if not importlib.util.find_spec(m)]
    if missing:
        return _error(f"{', '.join(missing)} not installed: pip install 'diffusiondesk[server]'")
    if args.ray is not None and not importlib.util.find_spec("ray"):
        return _error("--ray needs Ray Serve: pip install 'diffusiondesk[ray]'")

    from engine.asset_folders import data_dir
    from server.security import TOKEN_ENV, TokenCheck, load_or_create_token

    token = args.token or os.environ.get(TOKEN_ENV) or None
    check: TokenCheck | None = None
    if token:
        check = TokenCheck.for_token(token)
    elif not is_loopback(args.host) or args.new_token:
        path = args.token_file or data_dir() / "server-token.sha256"
        check, new = load_or_create_token(path, renew=args.new_token)
        if new is not None:
            print(
                f"Access token (shown once; clients send it as 'Authorization: Bearer …'):\n"
                f"  {new}\n(its digest is kept in {path})",
                flush=True,
            )
        else:
            print(
                f"Clients need the access token made earlier (digest in {path}); "
                f"--new-token makes another.",
                flush=True,
            )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from engine.api import EngineLike
    from engine.worker import Engine  # torch loads here, after every check
    from server.app import ServerConfig, create_app
    from server.catalog import ModelCatalog
    from server.hub import JobHub
    from server.running import uvicorn_config

    engine: EngineLike
    if args.ray is not None:
        from server.ray_engine import RayEngine
        from server.ray_serve import deploy

        handle, owned = deploy(
            address=args.ray or None,
            replicas=args.replicas,
            num_gpus=args.gpus_per_replica,
            join_running=args.ray != "",
        )
        engine = RayEngine(
            handle,
            f"Ray Serve, 1 to {args.replicas} replicas"
            if owned
            else "Ray Serve (the application serve run started)",
        )
    else:
        engine = Engine(device=args.device, dtype=args.dtype)
    catalog = ModelCatalog(args.models or _default_roots())
    hub = JobHub(engine, catalog, where=args.name)
    limit = int(args.max_upload_mb * 1024 * 1024)
    config = ServerConfig(
        token=check,
        max_body_bytes=limit,
        submits_per_second=args.rate,
        include_detail=args.debug_errors,
    )
    import uvicorn

    scheme = "https" if args.tls_cert else "http"
    print(
        f"Serving {engine.device_description} at {scheme}://{args.host}:{args.port} "
        f"(models: {', '.join(catalog.names())})",
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn_config(
            create_app(hub, config),
            args.host,
            args.port,
            max_message_bytes=limit,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    )
    try:
        server.run()
    finally:
        engine.shutdown(10)
        if args.ray is not None:
            _stop_ray(delete_app=owned)
    return 0


def _stop_ray(delete_app: bool) -> None:
    import ray
    from ray import serve

    from server.ray_serve import APP_NAME

    if delete_app:  # frees the replicas of a cluster that outlives us; not serve run's
        serve.delete(APP_NAME)
    ray.shutdown()


def _default_roots() -> list[Path]:
    from engine.asset_folders import default_roots

    return default_roots()


if __name__ == "__main__":
    sys.exit(main())
