"""The FastAPI application: JSON API, pages, and the guards in front of both.

Guards (safe by default):
- a token, when one is configured (any non-loopback bind needs one): the
  ``Authorization: Bearer`` header, or the cookie that ``/login?token=…`` sets;
- state-changing requests (POST) must be JSON and, when the browser sends an
  ``Origin``, come from this console's own origin: a cross-site form cannot send
  JSON, and a cross-site script's JSON request needs a CORS permission the console
  never grants.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from autotune.web import api, pages
from autotune.web.service import Console, Settings

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
TOKEN_COOKIE = "autotune_web_token"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _token_ok(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    given = given[7:] if given.lower().startswith("bearer ") else ""
    given = given or request.cookies.get(TOKEN_COOKIE, "")
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin:  # not a browser's cross-origin request (curl, scripts, same-origin GET)
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def create_app(settings: Settings) -> FastAPI:
    """The console for ``settings`` (see :mod:`autotune.web.__main__`)."""
    app = FastAPI(
        title="autotune console",
        description="Start, watch, stop and compare autotune studies. "
        "Studies run as their own `python -m autotune` processes; results live in MLflow.",
        version="1",
    )
    app.state.console = Console(settings)

    @app.middleware("http")
    async def guard(request: Request, call_next) -> Response:
        path = request.url.path
        public = path == "/login" or path.startswith("/static/")
        if settings.token and not public and not _token_ok(request, settings.token):
            return JSONResponse({"detail": "a token is required (see /login)"}, 401)
        if request.method not in _SAFE_METHODS:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json" or not _same_origin(request):
                return JSONResponse(
                    {"detail": "cross-site or non-JSON state-changing request refused"}, 403
                )
        return await call_next(request)

    @app.get("/login", include_in_schema=False)
    async def login(token: str = "") -> Response:
        if not settings.token or not hmac.compare_digest(token.encode(), settings.token.encode()):
            return JSONResponse({"detail": "wrong or missing token"}, 401)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return resp

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    return app
