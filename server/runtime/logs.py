"""Structured JSON logs: one line per event, with the `extra` fields as keys.

Secrets never reach a log line: handlers log user ids and event names, never payloads of
auth events, and any field whose name looks like a secret is masked here as a last guard.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_SECRET_WORDS = ("password", "token", "secret", "authorization")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            line[key] = (
                "[redacted]" if any(word in key.lower() for word in _SECRET_WORDS) else value
            )
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (every engine.io packet) is not an event worth a line.
    for noisy in ("engineio", "socketio", "aiohttp.access", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RateLimitedLog:
    """At most one line per `interval_s` for one kind of client misbehaviour, with a count of the
    lines it held back, so a flood of bad packets cannot flood the log."""

    def __init__(self, logger: logging.Logger, what: str, interval_s: float = 1.0) -> None:
        self.logger = logger
        self.what = what
        self.interval_s = interval_s
        self._last = -interval_s
        self.suppressed = 0

    def warn(self, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self.suppressed += 1
            return
        self.logger.warning(self.what, extra={**extra, "suppressedSinceLast": self.suppressed})
        self._last = now
        self.suppressed = 0
