"""JSON on the wire: orjson, with Decimals written as exact JSON numbers and times as ISO-8601 Z."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from game.clock import iso_z


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # A Fragment is written verbatim: "10.50" stays 10.50, never a binary float.
        return orjson.Fragment(str(value).encode())
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps_bytes(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


class OrjsonModule:
    """Stands in for the `json` module inside python-socketio and python-engineio."""

    @staticmethod
    def dumps(value: Any, *args: Any, **kwargs: Any) -> str:
        return dumps_bytes(value).decode()

    @staticmethod
    def loads(text: str | bytes, *args: Any, **kwargs: Any) -> Any:
        return orjson.loads(text)
