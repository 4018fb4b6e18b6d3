"""The ``unrolled serve`` command: check the folder, the extra and the port, then run uvicorn."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import socket
import sys
from pathlib import Path
from typing import Any

EXTRA = ("fastapi", "uvicorn")


def add_commands(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    from ..training.device import add_device_argument

    p = commands.add_parser(
        "serve",
        help="a local web app over a folder of runs: curves, samples, translations, forecasts, ...",
        description=(
            "Serve the runs under ROOT (found recursively, also those that appear while the server is up) "
            "as a web page and a JSON API: the runs table with their training curves, and each run's "
            "verbs (sample, translate, tag, predict, forecast, score, neurons). Models are loaded on first "
            "use and kept in a small cache; a run still training is loaded again after each save. "
            "Binds to the loopback address unless --host says otherwise. Needs the [serve] extra."
        ),
    )
    p.add_argument("root", nargs="?", default="runs", metavar="ROOT", help="folder of run directories [runs]")
    p.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1: this machine only]")
    p.add_argument("--port", type=int, default=8000, help="port [8000; 0: any free port]")
    p.add_argument("--cache", type=int, default=4, metavar="N", help="models kept loaded [4]")
    p.add_argument("--max-text", type=int, default=10_000, metavar="N", help="characters per request [10000]")
    p.add_argument("--max-length", type=int, default=5_000, metavar="N", help="tokens per sample [5000]")
    add_device_argument(p)
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    missing = [m for m in EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(
            f"unrolled serve needs {', '.join(missing)}: install the extra: pip install 'unrolled[serve]'"
        )
    import uvicorn

    from ..training.device import resolve_device
    from .app import Limits, create_app

    root = Path(args.root)
    if not root.is_dir():
        raise ValueError(f"ROOT {args.root!r} is not a folder: give the folder that holds your runs")
    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be 0..65535 (0: any free port), got {args.port}")
    for flag in ("cache", "max_text", "max_length"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    device = str(resolve_device(args.device))
    limits = Limits(text=args.max_text, length=args.max_length)
    app = create_app(root, device=device, cache=args.cache, limits=limits)
    sock = _bind(args.host, args.port)
    host = f"[{args.host}]" if ":" in args.host else args.host
    local = args.host in ("127.0.0.1", "localhost", "::1")
    where = "this machine only" if local else "reachable from other machines"
    print(
        f"unrolled serve: http://{host}:{sock.getsockname()[1]}/ ({where}; runs under {str(root)!r}; "
        "the API at /docs; Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a port in use or a bad address is one line (exit 2)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as e:
        raise ValueError(f"--host {host!r} is not an address of this machine ({e.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} is in use: stop what uses it, or give another --port") from None
        raise ValueError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock
