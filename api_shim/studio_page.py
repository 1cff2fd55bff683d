"""The studio page at ``/``: plain HTML, CSS and JavaScript from ``api_shim/studio/``, shipped in the package.

The page only calls this server's own API (same origin), so it works in pod mode and in front of RunPod alike.
It is served with a strict Content-Security-Policy (scripts and styles from this server's files only, no inline
code, nothing from another origin) and ``X-Content-Type-Options: nosniff``; every other answer gets nosniff too.
A client that asks ``/`` for JSON (``Accept: application/json`` without ``text/html``) gets the envelope with
where things are instead of the page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_shim.envelope import ok

STUDIO_DIR = Path(__file__).resolve().parent / "studio"
ASSETS_PATH = "/studio"
# blob: for media: songs fetched with the API key are played from object URLs
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "media-src 'self' blob:; connect-src 'self'; form-action 'none'; base-uri 'none'; "
                           "frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache"}  # revalidated (ETag) each load: a new image's page is picked up at once
NOSNIFF = (b"x-content-type-options", b"nosniff")


def wants_json(accept: str) -> bool:
    """``Accept`` names JSON and not HTML: an API client probing ``/``. A browser (``text/html``), curl's
    ``*/*`` and no header at all get the page."""
    kinds = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(kinds & {"application/json", "application/*"}) and "text/html" not in kinds


class SecurityHeaders:
    """nosniff on every answer; the page's policy on ``/`` and its files (not on ``/docs``, whose Swagger UI
    comes from a CDN with inline script). Pure ASGI, so streamed audio is passed through untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        page = path == "/" or path.startswith(ASSETS_PATH + "/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != NOSNIFF[0]]
                headers.append(NOSNIFF)
                if page:
                    taken = {name.lower().encode() for name in PAGE_HEADERS}
                    headers = [h for h in headers if h[0].lower() not in taken]
                    headers += [(name.lower().encode(), value.encode()) for name, value in PAGE_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_studio(app: FastAPI) -> None:
    """``GET /`` (the page, or JSON for a JSON client) and ``/studio/*`` (its script, style and icon)."""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def studio_page(request: Request) -> Response:
        if wants_json(request.headers.get("accept", "")):
            response = ok({"service": "ACE-Step API", "studio": "/", "docs": "/docs", "openapi": "/openapi.json",
                           "health": "/health"})
        else:
            response = FileResponse(STUDIO_DIR / "index.html", media_type="text/html; charset=utf-8")
        response.headers["Vary"] = "Accept"
        return response

    app.mount(ASSETS_PATH, StaticFiles(directory=STUDIO_DIR), name="studio")
    app.add_middleware(SecurityHeaders)
