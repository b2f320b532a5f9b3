"""Which browser origins may call the server: the CORS_ORIGINS allowlist, plus the server's own.

A page the server itself serves (the playground at /play, the admin page) is same-origin, which
CORS never restricts; browsers still send `Origin` on its POSTs and websocket handshakes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any


def is_allowed(origin: str, allowed: Collection[str], scheme: str, host: str | None) -> bool:
    return origin in allowed or (host is not None and origin == f"{scheme}://{host}")


def engineio_check(allowed: Collection[str]) -> Callable[[str, dict[str, Any]], bool]:
    """engine.io's `cors_allowed_origins` callable, applied to the handshake's WSGI-style environ."""

    def check(origin: str, environ: dict[str, Any]) -> bool:
        return is_allowed(
            origin, allowed, environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST")
        )

    return check
