"""What the routes share: the settings, rendering a template, the upload store, a few constants."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from fastapi import Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesmith.errors import TunesmithError
from tunesmith.ui import paths

UPLOAD_DIR = "uploads"
PREVIEW_ROWS = 5
CELL_CHARS = 300
FINAL_STATES = ("completed", "failed", "interrupted")
STOP_POLLING = 286  # htmx stops an `every Ns` poll on this status
SORTS = {"newest": "newest first", "name": "name", "status": "status", "eval_loss": "eval_loss (best first)",
         "loss": "train loss (best first)", "tokens_per_second": "tokens/s (fastest first)"}  # fmt: skip


@dataclass
class UiSettings:
    """Where the app reads data and runs, and how it guards itself."""

    data_root: Path
    runs_dir: Path
    token: str | None = None
    max_upload_mb: float = 50.0
    host: str = "127.0.0.1"  # the bind address: which Host headers are answered (see serve.hosts)

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 2**20)


def too_large(size: int, settings: UiSettings) -> str:
    return f"file: upload of {size / 2**20:.1f} MB refused; the limit is {settings.max_upload_mb:g} MB"


def render(
    request: Request, template: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    """Render a template (autoescaped) with the request and settings in its context."""
    env: Environment = request.app.state.env
    page = env.get_template(template).render(
        request=request, settings=request.app.state.settings, csrf=request.app.state.csrf, **context
    )
    return HTMLResponse(page, status_code=status_code, headers=headers)


def redirect(url: str) -> RedirectResponse:
    """A 303 redirect (after a POST)."""
    return RedirectResponse(url, status_code=303)


def settings_of(request: Request) -> UiSettings:
    """The app's settings."""
    settings: UiSettings = request.app.state.settings
    return settings


async def save_upload(upload: UploadFile, settings: UiSettings) -> Path:
    """Store an uploaded table under ``<data root>/uploads/``, refusing it past the size limit or unreadable.

    The bytes go to a hidden temporary file first; only a table that reads (not empty, rows under its header,
    UTF-8) is renamed into place, so a refused upload leaves nothing behind.
    """
    name = paths.upload_name(upload.filename or "")
    folder = settings.data_root / UPLOAD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(name).suffix  # the reader is picked by suffix
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=".upload-", suffix=suffix, delete=False)  # noqa: SIM115
    size = 0
    try:
        with handle:
            while chunk := await upload.read(2**20):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise StarletteHTTPException(413, too_large(size, settings) + " (or more)")
                handle.write(chunk)
        await run_in_threadpool(_check_table, Path(handle.name), upload.filename or name)
        target = _free_name(folder / name)
        Path(handle.name).replace(target)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    return target


def _check_table(path: Path, shown: str) -> None:
    from tunesmith.data.tables import read_table

    try:
        read_table(path, "file")
    except TunesmithError as err:
        # The message names the temporary file; the person knows the file by the name they uploaded.
        raise TunesmithError(err.message.replace(str(path), repr(PurePath(shown).name)), hint=err.hint) from err


def _free_name(path: Path) -> Path:
    for n in range(1, 10_000):
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise TunesmithError(f"file: no free name for {path.name} in {path.parent}")


def number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    return f"{value:.{digits}g}"
