"""The web app: routes that call the same library functions as the CLI, rendered with Jinja2 templates.

Safety lives here: the Host check on every request (DNS rebinding), the token check (when one is set), the
same-origin check on every POST (CSRF), the upload size limit, paths confined to the roots (``paths.safe_path``),
autoescaped templates and a Content-Security-Policy that runs only the app's own scripts. A bad request is
answered 4xx with one line (HTML for htmx, JSON otherwise); the app keeps serving.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesmith.errors import TunesmithError
from tunesmith.serve.hosts import allowed_hosts, host_allowed, refusal
from tunesmith.ui import progress
from tunesmith.ui.chat import ChatModels
from tunesmith.ui.pages import UiSettings, number, too_large

HERE = Path(__file__).parent
TOKEN_COOKIE = "tunesmith_ui_token"
CSRF_HEADER = "x-tunesmith-csrf"
CSRF_QUERY = "csrf"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
log = logging.getLogger("tunesmith.ui")


def create_app(settings: UiSettings) -> FastAPI:
    """The FastAPI application for ``settings`` (no server started)."""
    settings.data_root = settings.data_root.resolve()
    settings.runs_dir = settings.runs_dir.resolve()
    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.allowed_hosts = allowed_hosts(settings.host)
    # Per server start: pages carry it (an htmx header, the download form's URL); another site cannot read it.
    app.state.csrf = secrets.token_urlsafe(32)
    app.state.chat = ChatModels()
    app.state.doctor_lock = threading.Lock()
    app.state.env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), trim_blocks=True
    )
    app.state.env.filters["duration"] = progress.duration
    app.state.env.filters["number"] = number
    app.middleware("http")(_guard)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    from tunesmith.ui import routes

    app.include_router(routes.router)
    return app


async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    settings: UiSettings = request.app.state.settings
    if not host_allowed(request.headers.get("host"), request.app.state.allowed_hosts):
        return _problem(request, refusal(request.headers.get("host")), 400)
    if settings.token and not _token_ok(request, settings.token):
        return _problem(request, "missing or wrong token: open the URL the UI printed (it carries ?token=)", 401)
    if request.method not in ("GET", "HEAD") and (refused := _cross_site(request)):
        return _problem(request, refused, 403)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes + 2**16:
        return _problem(request, too_large(int(length), settings), 413)
    response = await call_next(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    # same-origin, not no-referrer: the browser then sends the page's real Origin with its own POSTs (with
    # no-referrer Chromium sends "Origin: null", which a foreign page can send too), and nothing leaves the site.
    response.headers["Referrer-Policy"] = "same-origin"
    if settings.token and request.query_params.get("token") == settings.token:
        response.set_cookie(TOKEN_COOKIE, settings.token, httponly=True, samesite="strict")
    return response


def _token_ok(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    supplied = [
        header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else "",
        request.cookies.get(TOKEN_COOKIE, ""),
        request.query_params.get("token", ""),
    ]
    return any(value and hmac.compare_digest(value.encode(), token.encode()) for value in supplied)


def _cross_site(request: Request) -> str | None:
    """Why a state-changing request is refused as cross-site, or None when it may go on.

    A page on another site can make the browser POST here (a form needs no CORS). Browsers name the page in
    Origin (or Referer); a foreign one is refused. ``Origin: null`` hides the page (a no-referrer policy, a
    sandboxed frame), so then only the per-server CSRF token that our own pages carry lets it through. A
    request with neither header comes from no browser page (curl, a script), which cannot ride on a visit.
    """
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    referer = request.headers.get("referer")
    if origin and origin != "null":
        return None if _netloc(origin) == host else f"cross-site request refused (Origin: {origin[:100]})"
    if referer:
        return None if _netloc(referer) == host else f"cross-site request refused (Referer: {referer[:100]})"
    if origin == "null" and not _csrf_ok(request):
        return "cross-site request refused (Origin: null without this page's CSRF token; reload the page)"
    return None


def _netloc(url: str) -> str | None:
    parts = urlsplit(url)
    return parts.netloc if parts.scheme in ("http", "https") else None


def _csrf_ok(request: Request) -> bool:
    expected: str = request.app.state.csrf
    supplied = request.headers.get(CSRF_HEADER) or request.query_params.get(CSRF_QUERY) or ""
    return bool(supplied) and hmac.compare_digest(supplied.encode(), expected.encode())


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TunesmithError)
    async def _expected(request: Request, err: TunesmithError) -> Response:
        return _problem(request, str(err), 400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> Response:
        first = err.errors()[0] if err.errors() else {"loc": ("request",), "msg": "invalid request"}
        field = ".".join(str(part) for part in first["loc"][1:]) or "request"
        return _problem(request, f"{field}: {first['msg']}", 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> Response:
        return _problem(request, str(err.detail), err.status_code)

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception) -> Response:
        log.exception("ui: %s %s failed", request.method, request.url.path)
        return _problem(request, f"internal error: {type(err).__name__}: {err}", 500)


def _problem(request: Request, message: str, status: int) -> Response:
    """One line for the person: an HTML fragment for htmx (it swaps it in), JSON for everything else."""
    if request.headers.get("hx-request"):
        env: Environment = request.app.state.env
        return HTMLResponse(env.get_template("_error.html").render(message=message), status_code=status)
    return JSONResponse({"error": message}, status_code=status)
