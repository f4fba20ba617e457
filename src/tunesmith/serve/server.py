"""``tunesmith serve``: check the address, load the runs, run uvicorn."""

from __future__ import annotations

import socket
from pathlib import Path

from tunesmith.console import say
from tunesmith.errors import TunesmithError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_bind(host: str, port: int, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without a key, and fail early on a port already taken."""
    if host not in LOCAL_HOSTS and not api_key:
        raise TunesmithError(
            f"--host {host}: serving beyond this machine needs an API key",
            hint="pass --api-key KEY or set TUNESMITH_API_KEY",
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise TunesmithError(f"--port {port}: cannot listen on {host}:{port}: {err.strerror}") from err


def serve(
    run_dirs: list[Path], host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, engine: str = "builtin"
) -> None:
    """Serve the runs (and their bases) over an OpenAI-compatible API until interrupted."""
    from tunesmith.serve.external import check_engine, external_command, run_external

    check_engine(engine)
    if engine != "builtin":
        command = external_command(engine, run_dirs, host, port, api_key)
        check_bind(host, port, api_key)
        say(f"serving with {engine} on http://{host}:{port}/v1")
        run_external(command)
        return
    import uvicorn

    from tunesmith.serve.app import create_app
    from tunesmith.serve.pool import load_pool

    check_bind(host, port, api_key)
    pool = load_pool(run_dirs)
    for route in pool.routes.values():
        say(f"model {route.id}" + (f" (tuned from {route.parent})" if route.parent else " (base)"))
    say(f"serving on http://{host}:{port}/v1" + (" (API key required)" if api_key else ""))
    uvicorn.run(create_app(pool, api_key, bind_host=host), host=host, port=port, log_level="warning")
