"""``python -m autotune.web``: serve the console (loopback by default).

python -m autotune.web                                   # http://127.0.0.1:8080
python -m autotune.web --mlflow-url http://127.0.0.1:5000
AUTOTUNE_WEB_TOKEN=… python -m autotune.web --host 0.0.0.0   # other binds need a token
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

from autotune.tracking import links

DEFAULT_PORT = 8080
FORBIDDEN_PORTS = {8443}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="autotune-web", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking store (default: MLFLOW_TRACKING_URI, else ./mlflow.db)",
    )
    p.add_argument(
        "--mlflow-url",
        default=os.environ.get("AUTOTUNE_MLFLOW_URL", links.DEFAULT_UI),
        help="where the MLflow UI is served, for links (default: %(default)s)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("AUTOTUNE_WEB_TOKEN"),
        help="access token (env AUTOTUNE_WEB_TOKEN); required for a non-loopback --host",
    )
    p.add_argument(
        "--experiments-dir",
        type=Path,
        default=Path("experiments"),
        help="config directory 'Save as experiment' writes to (default: ./experiments)",
    )
    p.add_argument("--state-dir", type=Path, default=Path(".autotune-web"))
    p.add_argument("--refresh", type=float, default=2.0, help="seconds between store reads")
    return p.parse_args(argv)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_args(args: argparse.Namespace) -> list[str]:
    """Problems that stop the console from starting, each with its fix."""
    errors = []
    if args.port in FORBIDDEN_PORTS:
        errors.append(f"--port {args.port}: this port is reserved here; use another one")
    if not _loopback(args.host) and not args.token:
        errors.append(
            f"--host {args.host}: binding beyond loopback needs a token: --token or "
            "AUTOTUNE_WEB_TOKEN (then open /login?token=… once in the browser)"
        )
    return errors


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    errors = check_args(args)
    if errors:
        from rich.console import Console

        err = Console(stderr=True)
        for e in errors:
            err.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from autotune.web import bridge
    from autotune.web.app import create_app
    from autotune.web.service import Settings

    start_dir = Path.cwd()
    settings = Settings(
        tracking_uri=bridge.default_tracking_uri(args.tracking_uri, start_dir),
        start_dir=start_dir,
        state_dir=args.state_dir.resolve(),
        experiments_dir=args.experiments_dir.resolve(),
        mlflow_url=args.mlflow_url,
        token=args.token,
        refresh_s=args.refresh,
    )
    logging.getLogger(__name__).info(
        "autotune console on http://%s:%d (tracking %s)",
        args.host,
        args.port,
        bridge.mask_url(settings.tracking_uri),
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
