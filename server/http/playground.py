"""The playground at `/play`: a static page that signs in, plays the game over Socket.IO and logs
every event. The socket.io client is the browser build from npm, committed beside the page
(`make play-client` refreshes it), so `make run` needs no network."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

STATIC: Final = Path(__file__).resolve().parent / "static"
# The pages render outside strings as text; the policy is a second wall: no inline script runs.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def page(path: Path) -> web.FileResponse:
    return web.FileResponse(
        path,
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


# Only the files shipped beside the page are served; any other name is a plain 404.
FILES: Final = frozenset(path.name for path in (STATIC / "play").iterdir() if path.is_file())


async def play_page(request: web.Request) -> web.FileResponse:
    return page(STATIC / "play" / "index.html")


async def play_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["file"]
    if name not in FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / "play" / name, headers={"X-Content-Type-Options": "nosniff"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/play", play_page)
    app.router.add_get("/play/{file}", play_file)
