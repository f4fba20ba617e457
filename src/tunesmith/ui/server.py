"""Start the UI: check the bind address against the token rule, print the URL, run uvicorn."""

from __future__ import annotations

import ipaddress
import os
import secrets
import threading
from pathlib import Path

from tunesmith.errors import TunesmithError

TOKEN_ENV = "TUNESMITH_UI_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The token to require: --token, else $TUNESMITH_UI_TOKEN; required for any non-loopback address."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise TunesmithError(
            f"--host {host}: other machines could reach the UI; give --token (or set {TOKEN_ENV})",
            hint=f"e.g. --token {secrets.token_urlsafe(16)}",
        )
    return token


def serve_ui(host: str, port: int, runs_dir: Path, data_root: Path, token: str | None, max_upload_mb: float) -> None:
    """Run the UI until interrupted (Ctrl-C stops the UI only: runs it launched go on)."""
    import uvicorn

    from tunesmith.console import say
    from tunesmith.ui.app import UiSettings, create_app

    if not data_root.is_dir():
        raise TunesmithError(f"--data-root {data_root}: not a directory")
    token = resolve_token(host, token)
    app = create_app(UiSettings(data_root, runs_dir, token, max_upload_mb, host))
    shown = f"[{host}]" if ":" in host else host
    say(f"tunesmith ui: http://{shown}:{port}/" + (f"?token={token}" if token else ""))
    # The first preview would otherwise wait for transformers to import; do it while the browser opens.
    threading.Thread(target=_warm_imports, name="warm-imports", daemon=True).start()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _warm_imports() -> None:
    from transformers import AutoTokenizer  # the lazy module imports its heavy part on first use

    import tunesmith.doctor  # noqa: F401 (pandas and the data pipeline)

    del AutoTokenizer
