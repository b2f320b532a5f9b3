"""What a node shows of itself: operators' detail behind METRICS_TOKEN, no software versions in
headers, and no text of a client's headers in the logs.
"""

from __future__ import annotations

import hmac
import logging
from typing import Final

from aiohttp import http_exceptions, web, web_response

from server.settings import SETTINGS

# Sent instead of aiohttp's `Python/3.x aiohttp/3.y`, which tells a scanner what to try.
SERVER_NAME: Final = "thisthat"


def hide_server_version() -> None:
    """Every response's `Server` header, including the ones aiohttp writes for requests it could
    not parse (those never reach the app's middlewares or signals), names no versions.

    aiohttp has no setting for it: the module constant it fills the header from is replaced.
    """
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]


class UnparsableRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse with the parser's exception, whose text quotes up to
    100 bytes of the offending line (an over-long `Authorization` header: its token) and a
    traceback. The record keeps the peer and the kind of error, and loses the quoted bytes; it
    is a warning, since the fault is the client's."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, http_exceptions.HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "unknown"
            record.msg = "unparsable HTTP request from %s: %s (status %s)"
            record.args = (peer, type(error).__name__, error.code)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def redact_unparsable_requests() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(known, UnparsableRequestFilter) for known in logger.filters):
        logger.addFilter(UnparsableRequestFilter())


def sees_operator_detail(request: web.Request) -> bool:
    """Whether this request may read /metrics and /readyz's details.

    With METRICS_TOKEN set, only `Authorization: Bearer <METRICS_TOKEN>` may (compared in
    constant time). Unset, development and test nodes show them to anyone, production nodes to
    no one.
    """
    settings = request.app[SETTINGS]
    expected = settings.metrics_token
    if not expected:
        return not settings.is_production
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    )
